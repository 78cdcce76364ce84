"""Mixup / CutMix (docs/method.md#augmentation): seeded, vectorized, non-square, clipped boxes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pspnet_core import mixing
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


def expected_boxes(b: int, h: int, w: int, seed: int):
    """The boxes eq. (5) asks for, from the same seeded draws cutmix makes (perm, then b, cy,
    cx): side (1 - b) * H by (1 - b) * W, centred at (cy, cx) uniform in the image, edges
    rounded and clipped to the image. Returns (perm, side fraction, box (B, H, W))."""
    g = gen(seed)
    perm = torch.randperm(b, generator=g)
    side = 1 - torch.rand(b, generator=g)
    cy, cx = torch.rand(b, generator=g) * h, torch.rand(b, generator=g) * w
    box = torch.zeros(b, h, w, dtype=torch.bool)
    for i in range(b):
        y0 = min(max(round(float(cy[i] - side[i] * h / 2)), 0), h)
        y1 = min(max(round(float(cy[i] + side[i] * h / 2)), 0), h)
        x0 = min(max(round(float(cx[i] - side[i] * w / 2)), 0), w)
        x1 = min(max(round(float(cx[i] + side[i] * w / 2)), 0), w)
        box[i, y0:y1, x0:x1] = True
    return perm, side, box


def test_cutmix_pastes_clipped_boxes_with_matching_lam():
    images, targets = batch(b=20)
    mixed, target, kind = cutmix(images, targets, gen(7))
    assert kind == "cutmix" and target.lam.shape == (20, H, W)
    perm, _, box = expected_boxes(20, H, W, seed=7)
    j = partner(target)
    assert torch.equal(j, perm)
    # sample i's image holds the value i: inside the box every pixel comes from perm[i],
    # outside from i itself
    for i in range(20):
        assert (mixed[i][:, box[i]] == perm[i]).all(), i
        assert (mixed[i][:, ~box[i]] == i).all(), i
    # lam is the weight of the sample's own labels: 0 in the box, 1 outside, so its mean is
    # 1 - the box's share of the image
    assert torch.equal(target.lam, (~box).float())
    area = box.flatten(1).float().mean(1)
    assert torch.allclose(target.lam.flatten(1).mean(1), 1 - area)
    assert (area > 0).any() and (area < 1).all()
    for i in range(20):
        if box[i].any() and j[i] != i:
            # the rendered label image shows the partner's labels (ignore included) in the box
            label = mixed_label_image(target)[i]
            assert torch.equal(label[box[i]], targets[j[i]][box[i]])
            assert torch.equal(label[~box[i]], targets[i][~box[i]])


def test_cutmix_box_sides_follow_height_and_width():
    b, h, w = 2000, 40, 120
    images, targets = batch(b=b, h=h, w=w)
    mixed, target, _ = cutmix(images, targets, gen(11))
    perm, side, want = expected_boxes(b, h, w, seed=11)
    box = target.lam == 0
    assert torch.equal(box, want)  # side (1 - b) * H by (1 - b) * W, rounded, clipped
    # the pasted pixels are exactly the box (where the partner is another sample)
    other = perm != torch.arange(b)
    from_partner = mixed[:, 0] == perm.view(-1, 1, 1).float()
    assert torch.equal(from_partner[other], box[other])
    rows = box.any(2)  # (B, H): rows the box covers
    cols = box.any(1)  # (B, W)
    assert torch.equal(box, rows[:, :, None] & cols[:, None, :])  # rectangles
    bh, bw = rows.sum(1).float(), cols.sum(1).float()
    inner = ~(rows[:, 0] | rows[:, -1] | cols[:, 0] | cols[:, -1]) & (bh > 0)
    clipped = (rows[:, 0] | rows[:, -1] | cols[:, 0] | cols[:, -1]) & (bh > 0)
    assert inner.sum() > 50 and clipped.sum() > 50  # both kinds occur
    # unclipped boxes: side (1 - b) of each image side, up to the rounding of two edges
    assert ((bh[inner] - side[inner] * h).abs() <= 1).all()
    assert ((bw[inner] - side[inner] * w).abs() <= 1).all()
    # clipped boxes are cut by the border: never larger than their unclipped side
    assert (bh[clipped] <= side[clipped] * h + 1).all()
    assert (bw[clipped] <= side[clipped] * w + 1).all()
    shrunk = (bh < side * h - 1) | (bw < side * w - 1)
    assert shrunk[clipped].sum() > 50 and not shrunk[inner].any()
    # b ~ U(0, 1): the side fraction is uniform, E = 1/2; clipping only shrinks the area
    assert side.mean().item() == pytest.approx(0.5, abs=0.03)
    area = box.flatten(1).float().mean(1)
    assert 0.12 < area.mean().item() < 1 / 3  # E[(1 - b)^2] = 1/3 before clipping


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


def test_pair_captions_name_a_sample_paired_with_itself():
    images = torch.arange(4 * 3 * 8 * 8, dtype=torch.float32).reshape(4, 3, 8, 8)
    labels = torch.zeros(4, 8, 8, dtype=torch.long)
    for seed in range(50):  # a permutation with a fixed point
        g = torch.Generator().manual_seed(seed)
        mixed, target, kind = mixing.cutmix(images, labels, g)
        caps = mixing.pair_captions(kind, images, mixed, target)
        selfs = [i for i in range(4) if torch.equal(mixed[i], images[i])]
        if selfs:
            break
    assert selfs and all("paired with itself" in caps[i] for i in selfs)
    assert all("paired with itself" not in c for i, c in enumerate(caps) if i not in selfs)
    assert all(c.startswith("pasted ") for c in caps)
