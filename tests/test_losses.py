"""Losses (docs/method.md#loss): the mixed loss equals eq. (3) on explicitly blended one-hot
maps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pspnet_core.losses import MixedTarget, segmentation_loss, total_loss

B, K, H, W = 3, 5, 9, 13


def labels(seed: int, ignore_frac: float = 0.2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, K, (B, H, W), generator=g)
    y[torch.rand(B, H, W, generator=g) < ignore_frac] = 255
    return y


def onehot(y: torch.Tensor) -> torch.Tensor:
    """(B, H, W) -> (B, K, H, W) float, all-zero at ignore pixels (eq. 2)."""
    q = F.one_hot(torch.where(y == 255, K, y), K + 1)[..., :K]
    return q.permute(0, 3, 1, 2).float()


def eq3(logits, q, reduction):
    """Eq. (3) on an explicit one-hot target, divided by the target mass."""
    per_pixel = -(q * F.log_softmax(logits, 1)).sum(1)  # (B, H, W)
    mass = q.sum(1)
    if reduction == "none":
        return per_pixel
    if reduction == "per_image":
        return per_pixel.flatten(1).sum(1) / mass.flatten(1).sum(1)
    return per_pixel.sum() / mass.sum()


@pytest.fixture
def logits() -> torch.Tensor:
    return torch.randn(B, K, H, W, generator=torch.Generator().manual_seed(0)) * 3


def test_hard_target_is_pytorch_cross_entropy(logits):
    y = labels(1)
    ref = F.cross_entropy(logits, y, ignore_index=255)
    assert segmentation_loss(logits, y).item() == pytest.approx(ref.item(), rel=1e-6)
    per_pixel = segmentation_loss(logits, y, reduction="none")
    assert torch.allclose(per_pixel, eq3(logits, onehot(y), "none"))
    per_image = segmentation_loss(logits, y, reduction="per_image")
    for i in range(B):
        ref_i = F.cross_entropy(logits[i : i + 1], y[i : i + 1], ignore_index=255)
        assert per_image[i].item() == pytest.approx(ref_i.item(), rel=1e-6)


@pytest.mark.parametrize("lam_kind", ["per_sample", "per_pixel"])
@pytest.mark.parametrize("reduction", ["mean", "per_image", "none"])
def test_mixed_equals_eq3_on_blended_onehot(logits, lam_kind, reduction, monkeypatch):
    a, b = labels(2), labels(3)
    a[0, :2] = 255
    b[0, :2] = 255  # rows ignored in both labels: mass 0 there
    g = torch.Generator().manual_seed(4)
    if lam_kind == "per_sample":
        lam = torch.rand(B, generator=g)
        lam_map = lam.view(B, 1, 1)
    else:
        lam = torch.rand(B, H, W, generator=g)
        lam[1] = (lam[1] > 0.5).float()  # a CutMix-like 0/1 map
        lam_map = lam
    blended = lam_map[:, None] * onehot(a) + (1 - lam_map[:, None]) * onehot(b)
    expected = eq3(logits, blended, reduction)

    def no_onehot(*args, **kwargs):
        raise AssertionError("the loss must not build a K x H x W target")

    monkeypatch.setattr(F, "one_hot", no_onehot)
    got = segmentation_loss(logits, MixedTarget(a, b, lam), reduction=reduction)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_mixed_gradient_equals_eq3_gradient(logits):
    a, b = labels(5), labels(6)
    lam = torch.rand(B, H, W, generator=torch.Generator().manual_seed(7))
    x1 = logits.clone().requires_grad_(True)
    x2 = logits.clone().requires_grad_(True)
    segmentation_loss(x1, MixedTarget(a, b, lam)).backward()
    q = lam[:, None] * onehot(a) + (1 - lam[:, None]) * onehot(b)
    eq3(x2, q, "mean").backward()
    assert torch.allclose(x1.grad, x2.grad, atol=1e-6)


def test_mixed_with_lam_one_is_hard_loss(logits):
    a, b = labels(8), labels(9)
    hard = segmentation_loss(logits, a)
    mixed = segmentation_loss(logits, MixedTarget(a, b, torch.ones(B)))
    assert mixed.item() == pytest.approx(hard.item(), rel=1e-6)


def test_one_class_bce_soft_target():
    g = torch.Generator().manual_seed(10)
    z = torch.randn(B, 1, H, W, generator=g)
    t = torch.rand(B, H, W, generator=g)  # soft target, e.g. a blended leaf mask
    ref = F.binary_cross_entropy_with_logits(z[:, 0], t)
    assert segmentation_loss(z, t).item() == pytest.approx(ref.item(), rel=1e-6)
    per_image = segmentation_loss(z, t, reduction="per_image")
    ref_i = F.binary_cross_entropy_with_logits(z[:, 0], t, reduction="none").mean((1, 2))
    assert torch.allclose(per_image, ref_i, atol=1e-6)
    # a soft target's BCE exceeds its entropy unless the prediction equals it
    exact = torch.logit(t.clamp(1e-4, 1 - 1e-4))[:, None]
    assert segmentation_loss(exact, t) < segmentation_loss(z, t)


def test_total_loss_aux_weight(logits):
    y = labels(11)
    aux = logits.flip(1)
    main_l, aux_l = segmentation_loss(logits, y), segmentation_loss(aux, y)
    assert total_loss((logits, aux), y).item() == pytest.approx((main_l + 0.4 * aux_l).item())
    assert total_loss((logits, aux), y, aux_weight=1.5).item() == pytest.approx(
        (main_l + 1.5 * aux_l).item()
    )
    assert total_loss((logits, None), y).item() == pytest.approx(main_l.item())


def test_shape_mismatch_is_a_clear_error(logits):
    with pytest.raises(ValueError, match="does not match logits"):
        segmentation_loss(logits, torch.zeros(B, H + 1, W, dtype=torch.long))
