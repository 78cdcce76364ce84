"""Segmentation losses (docs/method.md#loss, eqs. 1-3).

Cross-entropy over a softmax of K class maps against one-hot targets q (eq. 3):
``E = -sum_X sum_k q_k(X) log p_k(X)``. A Mixup/CutMix target is the blend
``q = lam * onehot(a) + (1 - lam) * onehot(b)``; E is linear in q, so

    E(blend) = lam * CE(a) + (1 - lam) * CE(b)        per pixel,

which is what :func:`segmentation_loss` computes from ``MixedTarget(labels_a, labels_b, lam)``
without ever building a K x H x W target (the blend stays two label maps and a weight).

Ignore pixels (label 255, VOC object borders) have an all-zero one-hot vector: they add nothing
to E and nothing to the target mass. ``reduction="mean"`` divides the summed loss by the total
target mass ``sum_X (lam [a valid] + (1 - lam) [b valid])``: for a hard target that is the number
of valid pixels (PyTorch's ``cross_entropy(ignore_index=255)`` mean), and for a blended one-hot
map it is ``sum_X sum_k q_k(X)``. ``"per_image"`` does the same per image (shape (B,); an image
with no valid pixel gets 0) and ``"none"`` returns the per-pixel loss (B, H, W), unnormalized.

K = 1 (the leaf experiment's analog output) uses binary cross-entropy with logits against a soft
float target in [0, 1] (a mixed float target is simply a blended float map).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from pspnet_core.metrics import IGNORE_INDEX

Reduction = Literal["mean", "per_image", "none"]


class MixedTarget(NamedTuple):
    """A Mixup/CutMix target: ``lam`` (B,) or (B, H, W) is the weight of ``labels_a``."""

    labels_a: Tensor  # long (B, H, W), 255 = ignore
    labels_b: Tensor  # long (B, H, W), 255 = ignore
    lam: Tensor  # float (B,) for Mixup or (B, H, W) for CutMix


Target = Tensor | MixedTarget


def _lam_map(lam: Tensor, like: Tensor) -> Tensor:
    """``lam`` (B,) or (B, H, W) -> float32 broadcastable against (B, H, W)."""
    lam = lam.to(device=like.device, dtype=torch.float32)
    return lam.view(-1, 1, 1) if lam.ndim == 1 else lam


def _reduce(loss: Tensor, mass: Tensor, reduction: Reduction) -> Tensor:
    """``loss`` and ``mass`` are (B, H, W): summed loss / summed target mass."""
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.sum() / mass.sum().clamp_min(1e-12)
    if reduction == "per_image":
        return loss.flatten(1).sum(1) / mass.flatten(1).sum(1).clamp_min(1e-12)  # (B,)
    raise ValueError(f"reduction must be 'mean', 'per_image' or 'none', got {reduction!r}")


def _nll(logp: Tensor, labels: Tensor, ignore_index: int) -> tuple[Tensor, Tensor]:
    """Per-pixel -log p_label (0 at ignore pixels) and the valid mask, both (B, H, W)."""
    nll = F.nll_loss(logp, labels, ignore_index=ignore_index, reduction="none")
    return nll, (labels != ignore_index).float()


def cross_entropy(
    logits: Tensor, target: Target, ignore_index: int = IGNORE_INDEX, reduction: Reduction = "mean"
) -> Tensor:
    """Eq. (3) for K > 1 on a hard label map (B, H, W) or a :class:`MixedTarget`."""
    logp = F.log_softmax(logits.float(), dim=1)  # (B, K, H, W), eq. (1) in log space
    if isinstance(target, MixedTarget):
        nll_a, valid_a = _nll(logp, target.labels_a, ignore_index)
        nll_b, valid_b = _nll(logp, target.labels_b, ignore_index)
        lam = _lam_map(target.lam, logp)  # (B, 1, 1) or (B, H, W)
        w_a, w_b = lam * valid_a, (1 - lam) * valid_b  # target mass per pixel
        return _reduce(w_a * nll_a + w_b * nll_b, w_a + w_b, reduction)
    nll, valid = _nll(logp, target, ignore_index)
    return _reduce(nll, valid, reduction)


def binary_cross_entropy(
    logits: Tensor, target: Tensor, ignore_index: int = IGNORE_INDEX, reduction: Reduction = "mean"
) -> Tensor:
    """One analog output (K = 1): BCE with logits against a soft target (B, H, W) in [0, 1].

    An integer target is read as a hard 0/1 mask whose ``ignore_index`` pixels are ignored.
    """
    if isinstance(target, MixedTarget):
        raise TypeError("a K=1 target is a float map: mix it by blending, not as MixedTarget")
    logits = logits[:, 0].float()  # (B, 1, H, W) -> (B, H, W)
    if target.is_floating_point():
        valid = torch.ones_like(logits)
    else:
        valid = (target != ignore_index).float()
        target = torch.where(target == ignore_index, 0, target)
    loss = F.binary_cross_entropy_with_logits(logits, target.float(), reduction="none")
    return _reduce(loss * valid, valid, reduction)


def segmentation_loss(
    logits: Tensor, target: Target, ignore_index: int = IGNORE_INDEX, reduction: Reduction = "mean"
) -> Tensor:
    """Cross-entropy for K > 1 (hard or mixed target), BCE-with-logits for K = 1."""
    if logits.ndim != 4:
        raise ValueError(f"expected logits (B, K, H, W), got {tuple(logits.shape)}")
    labels = target.labels_a if isinstance(target, MixedTarget) else target
    if labels.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"target {tuple(labels.shape)} does not match logits {tuple(logits.shape)}: "
            "expected (B, H, W)"
        )
    if logits.shape[1] == 1:
        return binary_cross_entropy(logits, target, ignore_index, reduction)
    return cross_entropy(logits, target, ignore_index, reduction)


def total_loss(
    outputs: tuple[Tensor, Tensor | None], target: Target, aux_weight: float = 0.4
) -> Tensor:
    """``criterion(main) + aux_weight * criterion(aux)`` (docs/method.md#loss; 0.4 as the
    official PSPNet code). When aux is None (skipped) the loss is the main loss alone.

    Both criteria are computed in float32 (``segmentation_loss`` casts the logits), also under
    bf16 autocast. Training logs the main criterion separately: see :func:`main_and_total`.
    """
    return main_and_total(outputs, target, aux_weight)[1]


def main_and_total(
    outputs: tuple[Tensor, Tensor | None], target: Target, aux_weight: float = 0.4
) -> tuple[Tensor, Tensor]:
    """(main criterion, :func:`total_loss`): the first is what the learning curves plot, the
    second what is optimized."""
    main, aux = outputs
    main_loss = segmentation_loss(main, target)
    total = main_loss
    if aux is not None and aux_weight != 0:
        total = main_loss + aux_weight * segmentation_loss(aux, target)
    return main_loss, total
