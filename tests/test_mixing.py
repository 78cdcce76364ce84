"""Mixup / CutMix (PAPER.md section 4): seeded, vectorized, non-square, clipped boxes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pspnet_core.losses import MixedTarget
from pspnet_core.mixing import cutmix, mix_batch, mixed_label_image, mixup

B, H, W = 32, 24, 72  # non-square on purpose: a swapped H/W would show


def batch(b: int = B, h: int = H, w: int = W):
    """Sample i: image filled with i (all 3 channels), labels i % 20 with an ignore stripe."""
    ids = torch.arange(b, dtype=torch.float32)
    images = ids.view(b, 1, 1, 1).expand(b, 3, h, w).clone()
    targets = (torch.arange(b) % 20).view(b, 1, 1).expand(b, h, w).clone()
    targets[:, :, :3] = 255
    return images, targets


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def partner(target: MixedTarget) -> torch.Tensor:
    """perm[i], read back from the image-valued labels (labels_b = labels[perm])."""
    return target.labels_b[:, 0, -1]  # column -1 is never ignore


@pytest.mark.parametrize("fn", [mixup, cutmix, mix_batch])
def test_same_seed_same_batch(fn):
    images, targets = batch()
    out1, t1, k1 = fn(images, targets, gen(0))
    out2, t2, k2 = fn(images, targets, gen(0))
    out3, _, _ = fn(images, targets, gen(1))
    assert k1 == k2 and torch.equal(out1, out2)
    assert all(torch.equal(x, y) for x, y in zip(t1, t2, strict=True))
    assert not torch.equal(out1, out3)


def test_mixup_blends_images_and_targets_identically():
    images, targets = batch(b=20)  # labels i % 20 == i: the partner is readable
    mixed, target, kind = mixup(images, targets, gen(3))
    assert kind == "mixup" and isinstance(target, MixedTarget)
    j = partner(target)
    assert sorted(j.tolist()) == list(range(20))  # a permutation
    assert torch.equal(target.labels_a, targets) and torch.equal(target.labels_b, targets[j])
    lam = target.lam
    assert lam.shape == (20,) and (lam > 0).all() and (lam < 1).all()
    expected = lam.view(-1, 1, 1, 1) * images + (1 - lam.view(-1, 1, 1, 1)) * images[j]
    assert torch.allclose(mixed, expected)
    assert target.labels_b[:, :, :3].eq(255).all()  # ignore pixels travel with their labels


def test_lam_is_uniform_per_sample():
    images, targets = batch(b=4000, h=2, w=2)
    _, target, _ = mixup(images, targets, gen(5))
    lam = target.lam
    assert lam.mean().item() == pytest.approx(0.5, abs=0.03)
    assert lam.var().item() == pytest.approx(1 / 12, abs=0.01)
    hist = torch.histc(lam, bins=10, min=0, max=1) / len(lam)
    assert (hist - 0.1).abs().max() < 0.03


def test_cutmix_pastes_clipped_boxes_with_matching_lam():
    images, targets = batch(b=20)
    mixed, target, kind = cutmix(images, targets, gen(7))
    assert kind == "cutmix" and target.lam.shape == (20, H, W)
    j = partner(target)
    box = target.lam == 0
    # image and lam agree pixel for pixel: inside the box the partner, outside the sample itself
    expected = torch.where(box[:, None], images[j], images)
    assert torch.equal(mixed, expected)
    assert set(target.lam.unique().tolist()) <= {0.0, 1.0}
    for i in range(20):
        rows, cols = box[i].any(1), box[i].any(0)
        assert torch.equal(box[i], rows[:, None] & cols[None, :])  # a rectangle
        if rows.any() and j[i] != i:
            # the rendered label image shows the partner's labels (ignore included) in the box
            label = mixed_label_image(target)[i]
            assert torch.equal(label[box[i]], targets[j[i]][box[i]])
            assert torch.equal(label[~box[i]], targets[i][~box[i]])


def test_cutmix_box_sides_follow_height_and_width():
    images, targets = batch(b=2000, h=40, w=120)
    _, target, _ = cutmix(images, targets, gen(11))
    box = target.lam == 0
    h = box.any(2).sum(1).float()  # box height per sample
    w = box.any(1).sum(1).float()
    inner = box.any(2)[:, 0].logical_not() & box.any(2)[:, -1].logical_not()
    inner &= box.any(1)[:, 0].logical_not() & box.any(1)[:, -1].logical_not()
    inner &= h > 0
    assert inner.sum() > 50 and (~inner).sum() > 50  # both unclipped and clipped boxes occur
    # unclipped boxes: the same fraction (1 - b) of each side (a swapped H/W fails this)
    assert ((h[inner] / 40 - w[inner] / 120).abs() <= 1.5 / 40).all()
    # clipped boxes stay inside the image and are smaller than their unclipped side
    assert box.shape == (2000, 40, 120)
    area = box.flatten(1).float().mean(1)
    # E[area fraction] with side (1-b), b ~ U(0,1): E[(1-b)^2] = 1/3 before clipping
    assert 0.12 < area.mean().item() < 1 / 3


def test_float_targets_are_blended_maps():
    images, labels = batch(b=8)
    soft = torch.rand(8, H, W, generator=gen(2))
    _, target, _ = mixup(images, soft, gen(3))
    _, ref, _ = mixup(images, labels, gen(3))  # same draws: the same perm and lam
    lam, j = ref.lam.view(-1, 1, 1), partner(ref)
    assert target.dtype == torch.float32 and target.shape == (8, H, W)
    assert torch.allclose(target, lam * soft + (1 - lam) * soft[j])
    mixed_c, target_c, _ = cutmix(images, soft, gen(3))
    src = mixed_c[:, 0].long()  # images hold their index: which sample each pixel came from
    assert torch.equal(target_c, soft[src, torch.arange(H)[:, None], torch.arange(W)])


def test_mix_batch_picks_by_probability():
    images, targets = batch(b=4)
    kinds = [mix_batch(images, targets, gen(s), cutmix_prob=0.5)[2] for s in range(40)]
    assert 8 < kinds.count("cutmix") < 32
    assert {mix_batch(images, targets, gen(s), cutmix_prob=0.0)[2] for s in range(10)} == {"mixup"}
    assert {mix_batch(images, targets, gen(s), cutmix_prob=1.0)[2] for s in range(10)} == {"cutmix"}
    with pytest.raises(ValueError, match="cutmix_prob"):
        mix_batch(images, targets, gen(0), cutmix_prob=1.5)


@pytest.mark.parametrize("per_pixel", [False, True])
def test_mixed_label_image_is_argmax_of_blend(per_pixel):
    g = gen(13)
    a = torch.randint(0, 21, (6, 10, 14), generator=g)
    b = torch.randint(0, 21, (6, 10, 14), generator=g)
    a[torch.rand(a.shape, generator=g) < 0.3] = 255
    b[torch.rand(b.shape, generator=g) < 0.3] = 255
    lam = torch.rand((6, 10, 14) if per_pixel else (6,), generator=g)
    lam[0] = 0.5  # ties go to the smaller label, like argmax
    lam_map = lam.view(-1, 1, 1, 1) if lam.ndim == 1 else lam[:, None]
    blend = lam_map * F.one_hot(a, 256).permute(0, 3, 1, 2) + (1 - lam_map) * F.one_hot(
        b, 256
    ).permute(0, 3, 1, 2)
    expected = blend.argmax(1)
    got = mixed_label_image(MixedTarget(a, b, lam))
    assert torch.equal(got, expected)
    assert (got[(a == 255) & (b == 255)] == 255).all()
    assert torch.equal(mixed_label_image(a), a)
