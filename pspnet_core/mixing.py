"""Mixup and CutMix on a batch (docs/method.md#augmentation, eqs. 4-5).

Both pair sample i with sample ``perm[i]`` of a random permutation and return the mixed images
and a target that weights sample i's labels by ``lam``:

- Mixup: ``x_i = lam_i x_i + (1 - lam_i) x_perm[i]``, ``lam_i ~ U(0, 1)`` per sample.
- CutMix: a box of side ``(1 - b_i) * H`` by ``(1 - b_i) * W``, ``b_i ~ U(0, 1)``, centred
  uniformly in the image and clipped to it, is pasted from sample ``perm[i]``. ``lam`` is a
  per-pixel map, 1 outside the (clipped) box and 0 inside, so it matches the pasted pixels exactly.

A hard label target (long (B, H, W), 255 = ignore) becomes a :class:`MixedTarget`
``(labels, labels[perm], lam)``: ignore pixels travel with their labels and the loss handles them
(losses.py). A float target (the leaf masks, K = 1) is blended directly and stays a float map.
Everything is vectorized over the batch and drawn from the caller's ``torch.Generator`` (on the
CPU), so the same seed gives the same batch.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from pspnet_core.losses import MixedTarget

Kind = Literal["mixup", "cutmix"]


def _draw(n: int, generator: torch.Generator, device: torch.device) -> Tensor:
    return torch.rand(n, generator=generator).to(device)


def _check(images: Tensor, targets: Tensor) -> None:
    if images.ndim != 4 or targets.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(
            f"expected images (B, C, H, W) and targets (B, H, W), "
            f"got {tuple(images.shape)} and {tuple(targets.shape)}"
        )


def _mix_target(targets: Tensor, perm: Tensor, lam: Tensor) -> Tensor | MixedTarget:
    """lam (B,) or (B, H, W) is the weight of ``targets``."""
    if targets.is_floating_point():  # soft/float target: blend the map itself
        lam_map = lam.view(-1, 1, 1) if lam.ndim == 1 else lam
        lam_map = lam_map.to(targets.dtype)
        return lam_map * targets + (1 - lam_map) * targets[perm]
    return MixedTarget(targets, targets[perm], lam)


def mixup(
    images: Tensor, targets: Tensor, generator: torch.Generator
) -> tuple[Tensor, Tensor | MixedTarget, Kind]:
    """Eq. (4): blend every sample with a random partner, ``lam ~ U(0, 1)`` per sample."""
    _check(images, targets)
    b = images.shape[0]
    perm = torch.randperm(b, generator=generator).to(images.device)
    lam = _draw(b, generator, images.device)  # (B,)
    w = lam.to(images.dtype).view(-1, 1, 1, 1)
    mixed = w * images + (1 - w) * images[perm]  # (B, C, H, W)
    return mixed, _mix_target(targets, perm, lam), "mixup"


def cutmix_boxes(
    b: int, height: int, width: int, generator: torch.Generator, device: torch.device
) -> Tensor:
    """Boolean (B, H, W): True inside each sample's clipped box (eq. 5)."""
    side = 1 - _draw(b, generator, device)  # (B,) box side as a fraction of the image side
    cy = _draw(b, generator, device) * height  # centre, uniform over the image
    cx = _draw(b, generator, device) * width
    half_h, half_w = side * height / 2, side * width / 2
    y0, y1 = (cy - half_h).round().clamp(0, height), (cy + half_h).round().clamp(0, height)
    x0, x1 = (cx - half_w).round().clamp(0, width), (cx + half_w).round().clamp(0, width)
    ys = torch.arange(height, device=device)
    xs = torch.arange(width, device=device)
    in_y = (ys >= y0[:, None]) & (ys < y1[:, None])  # (B, H)
    in_x = (xs >= x0[:, None]) & (xs < x1[:, None])  # (B, W)
    return in_y[:, :, None] & in_x[:, None, :]  # (B, H, W)


def cutmix(
    images: Tensor, targets: Tensor, generator: torch.Generator
) -> tuple[Tensor, Tensor | MixedTarget, Kind]:
    """Eq. (5): paste a random box of a random partner; ``lam`` (B, H, W) is 0 inside the box."""
    _check(images, targets)
    b, _, h, w = images.shape
    perm = torch.randperm(b, generator=generator).to(images.device)
    box = cutmix_boxes(b, h, w, generator, images.device)  # (B, H, W)
    mixed = torch.where(box[:, None], images[perm], images)  # (B, C, H, W)
    lam = (~box).float()  # (B, H, W): weight of the sample's own labels
    return mixed, _mix_target(targets, perm, lam), "cutmix"


def mix_batch(
    images: Tensor, targets: Tensor, generator: torch.Generator, cutmix_prob: float = 0.5
) -> tuple[Tensor, Tensor | MixedTarget, Kind]:
    """CutMix with probability ``cutmix_prob``, else Mixup (one choice per batch)."""
    if not 0.0 <= cutmix_prob <= 1.0:
        raise ValueError(f"cutmix_prob must be in [0, 1], got {cutmix_prob}")
    use_cutmix = torch.rand((), generator=generator).item() < cutmix_prob
    return (cutmix if use_cutmix else mixup)(images, targets, generator)


def mixed_label_image(target: MixedTarget | Tensor) -> Tensor:
    """The label image of a mixed target: per-pixel argmax of ``lam onehot(a) + (1-lam) onehot(b)``
    (paper Figs. 3-4), with the ignore label 255 counted as a class of its own, so a pixel that is
    ignore in both stays 255. Ties (lam = 0.5) go to the smaller label, as ``argmax`` does.
    A plain label map is returned unchanged."""
    if not isinstance(target, MixedTarget):
        return target
    a, b = target.labels_a, target.labels_b
    lam = target.lam.to(a.device)
    lam = lam.view(-1, 1, 1) if lam.ndim == 1 else lam  # (B, 1, 1) or (B, H, W)
    tie = torch.minimum(a, b)
    return torch.where(lam > 0.5, a, torch.where(lam < 0.5, b, tie))  # (B, H, W)


def pair_captions(kind: str, images: Tensor, mixed: Tensor, target: MixedTarget) -> list[str]:
    """Captions of Figs. 3-4: Mixup's ``a = lam``, CutMix's pasted share; a sample the
    permutation paired with itself (its mixed image equals the original) says so, since
    nothing was blended or pasted from another image."""
    out = []
    for i, lam in enumerate(target.lam):
        share = float(lam.mean()) if kind == "mixup" else 1 - float(lam.mean())
        text = f"a = {share:.2f}" if kind == "mixup" else f"pasted {share:.0%}"
        if torch.equal(mixed[i], images[i]):
            text += " (paired with itself)"
        out.append(text)
    return out
