"""Segmentation metrics from an accumulated confusion matrix (docs/method.md#metrics).

Everything is computed from one integer confusion matrix ``cm[target, prediction]`` summed over
the whole held-out set (not averaged per batch), so the numbers do not depend on the batch size
and can be summed across DDP ranks with a single ``all_reduce``.

- VOC (K > 1): prediction = argmax over the K class maps; pixels labelled ``ignore_index`` (255,
  object borders) are skipped. mIoU is the mean IoU over the classes *present* (union > 0, i.e.
  the class occurs in the labels or in the predictions); absent classes do not count as 0 or 1.
- Leaf (K = 1): prediction = sigmoid(logit) >= 0.5 (:data:`LEAF_THRESHOLD`; the training
  history, the figures, the claims and the explorer all use it), label = target > 0.5; a 2x2
  confusion matrix gives Dice = 2TP / (2TP + FP + FN) and IoU = TP / (TP + FP + FN) of the
  disease class (1.0 when both prediction and label are empty everywhere).

Measurements the analysis and the claims use live here too, so that every count has one
definition: :func:`scene_complexity` of a label map and :func:`leaf_pixel_stats` of analog
leaf outputs (both in numpy; Dice/IoU there come from the same :func:`dice_from_counts`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

IGNORE_INDEX = 255  # VOC's object-border label: skipped by losses and metrics (docs/method.md#loss)


def confusion_matrix(
    pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """``(K, K)`` int64 counts, rows = label, columns = prediction; ``ignore_index`` skipped.

    ``pred`` and ``target`` are integer tensors of the same shape (any shape). Labels outside
    ``0..K-1`` other than ``ignore_index`` are an error (they would silently shift counts).
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    pred = pred.reshape(-1).long()
    target = target.reshape(-1).long()
    keep = target != ignore_index
    pred, target = pred[keep], target[keep]
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise ValueError(
            f"labels must be in 0..{num_classes - 1} or {ignore_index}; "
            f"got range {int(target.min())}..{int(target.max())}"
        )
    idx = target * num_classes + pred.clamp(0, num_classes - 1)
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def per_class_iou(cm: Tensor) -> Tensor:
    """IoU per class (float64) of a confusion matrix ``(K, K)`` or of a stack ``(..., K, K)``
    (one per image: ``(N, K)`` back); NaN for classes absent from both labels and predictions.
    The one IoU definition: the history, figures, claims and the explorer's table use it."""
    cm = cm.double()
    tp = torch.diagonal(cm, dim1=-2, dim2=-1)  # (..., K)
    union = cm.sum(-2) + cm.sum(-1) - tp
    iou = tp / union
    iou[union == 0] = float("nan")
    return iou


def pixel_accuracies(cm: Tensor) -> Tensor:
    """Correct / counted pixels of each confusion matrix of a stack ``(..., K, K)`` -> ``(...)``
    (float64; NaN where nothing was counted)."""
    cm = cm.double()
    total = cm.sum((-2, -1))
    acc = torch.diagonal(cm, dim1=-2, dim2=-1).sum(-1) / total
    acc[total == 0] = float("nan")
    return acc


def mean_iou(cm: Tensor) -> float:
    """Mean IoU over present classes (union > 0); NaN if nothing was counted."""
    iou = per_class_iou(cm)
    present = ~torch.isnan(iou)
    return float(iou[present].mean()) if present.any() else float("nan")


def pixel_accuracy(cm: Tensor) -> float:
    """Correct pixels / counted pixels (ignored pixels excluded)."""
    return float(pixel_accuracies(cm))


LEAF_THRESHOLD = 0.5  # a leaf pixel is predicted diseased when p >= LEAF_THRESHOLD


def binary_confusion(
    logits: Tensor, target: Tensor, threshold: float = LEAF_THRESHOLD
) -> Tensor:
    """2x2 counts for the one-class task: prediction = sigmoid(logits) >= threshold (the one
    leaf threshold rule, as everywhere else).

    ``logits`` ``(B, 1, H, W)`` or ``(B, H, W)``; ``target`` float ``(B, H, W)`` in [0, 1]
    (binarized at 0.5).
    """
    if logits.dim() == target.dim() + 1:
        logits = logits.squeeze(1)
    pred = torch.sigmoid(logits.float()) >= threshold
    label = target > 0.5
    return confusion_matrix(pred.long(), label.long(), num_classes=2, ignore_index=-1)


def dice_from_counts(tp: float, fp: float, fn: float) -> float:
    """2TP / (2TP + FP + FN); 1.0 when prediction and label are both empty."""
    denom = 2 * tp + fp + fn
    return 2 * tp / denom if denom > 0 else 1.0


def iou_from_counts(tp: float, fp: float, fn: float) -> float:
    """TP / (TP + FP + FN); 1.0 when prediction and label are both empty."""
    denom = tp + fp + fn
    return tp / denom if denom > 0 else 1.0


def dice(cm2: Tensor) -> float:
    """Dice of class 1 from a 2x2 confusion matrix (1.0 when both sides are empty)."""
    return dice_from_counts(float(cm2[1, 1]), float(cm2[0, 1]), float(cm2[1, 0]))


def binary_iou(cm2: Tensor) -> float:
    """IoU (Jaccard) of class 1 from a 2x2 confusion matrix (1.0 when both sides are empty)."""
    return iou_from_counts(float(cm2[1, 1]), float(cm2[0, 1]), float(cm2[1, 0]))


class SegMetrics:
    """Accumulates a confusion matrix over batches; ``compute()`` gives the epoch's numbers.

    ``num_classes == 1`` selects the one-class (leaf) task. ``cm`` is a plain tensor so that DDP
    can ``all_reduce`` it (see ``engine.evaluate``).
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, device="cpu"):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        size = 2 if num_classes == 1 else num_classes
        self.cm = torch.zeros(size, size, dtype=torch.int64, device=device)

    @torch.no_grad()
    def update(self, logits: Tensor, target: Tensor) -> None:
        """``logits`` ``(B, K, H, W)``; ``target`` long ``(B, H, W)`` (VOC) or float (leaf)."""
        if self.num_classes == 1:
            cm = binary_confusion(logits, target)
        else:
            cm = confusion_matrix(
                logits.argmax(1), target, self.num_classes, self.ignore_index
            )
        self.cm += cm.to(self.cm.device)

    def compute(self) -> dict[str, float]:
        """VOC: ``miou``, ``pixel_acc``; leaf: ``dice``, ``iou`` (plus ``pixel_acc``)."""
        cm = self.cm.cpu()
        if self.num_classes == 1:
            return {"dice": dice(cm), "iou": binary_iou(cm), "pixel_acc": pixel_accuracy(cm)}
        return {"miou": mean_iou(cm), "pixel_acc": pixel_accuracy(cm)}

    def per_class_iou(self) -> Tensor:
        return per_class_iou(self.cm.cpu())


# ---------------------------------------------------------------- measurements


def scene_complexity(
    label: Any, ignore_index: int = IGNORE_INDEX, region: Any | None = None
) -> dict[str, float]:
    """How complex a VOC label map is: classes present, foreground share, boundary share.

    ``ignore_index`` pixels (VOC's 5-px object-border bands, "difficult" regions) are not part
    of the scene: each takes the label of its nearest labelled pixel (Euclidean), so a border
    band counts as the one class change it marks, not as a band of complexity.
    ``boundary_fraction`` = share of pixels whose right / lower neighbour has another class in
    that filled map; ``complexity`` = boundary_fraction (small simple regions have few boundary
    pixels, cluttered scenes many). An all-ignored map has complexity 0.
    ``region`` (bool, the map's shape; None = every pixel): the scene's extent, e.g. without the
    padding a letterbox adds. Pixels outside it are neither filled from nor counted, and a class
    change across its edge is no boundary (claim 4(a), paper section 4.3).
    """
    lab = label.detach().cpu().numpy() if hasattr(label, "detach") else np.asarray(label)
    inside = np.ones(lab.shape, bool) if region is None else np.asarray(region, dtype=bool)
    valid = (lab != ignore_index) & inside
    classes = np.unique(lab[valid])
    fg = float(((lab != 0) & valid).sum() / max(valid.sum(), 1))
    if valid.all() or not valid.any():
        filled = lab
    else:
        idx = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
        filled = lab[tuple(idx)]
    edge = np.zeros(lab.shape, dtype=bool)
    if valid.any():
        edge[:, :-1] |= (filled[:, 1:] != filled[:, :-1]) & inside[:, 1:] & inside[:, :-1]
        edge[:-1, :] |= (filled[1:, :] != filled[:-1, :]) & inside[1:, :] & inside[:-1, :]
    bf = float(edge[inside].mean()) if inside.any() else 0.0
    return {
        "n_classes": int(len(classes)),
        "foreground_fraction": fg,
        "boundary_fraction": bf,
        "complexity": bf,
    }


def leaf_region(image: Any, mask: Any | None = None) -> np.ndarray:
    """The leaf's pixels in a leaf photo (H, W, 3) uint8: bool (H, W).

    Excess green ``2g - r - b`` of the chromaticity (Woebbecke et al. 1995) thresholded by Otsu
    over the non-padding pixels (padding is exact black), united with the disease ``mask``
    (brown spots are not green), holes filled, largest connected component kept. Claim 7 and
    the reliability curve of notebook 05 read only these pixels: never background or padding.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"expected an image (H, W, 3), got shape {img.shape}")
    total = img.sum(-1)
    content = total > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        chrom = img / np.where(total > 0, total, 1)[..., None]
    exg = 2 * chrom[..., 1] - chrom[..., 0] - chrom[..., 2]
    region = content & (exg > _otsu(exg[content])) if content.any() else content
    if mask is not None:
        region |= (np.asarray(mask) > 0.5) & (np.asarray(mask) != IGNORE_INDEX) & content
    region = ndimage.binary_fill_holes(region)
    labels, n = ndimage.label(region)
    if n > 1:
        sizes = np.bincount(labels.ravel())[1:]
        region = labels == 1 + int(np.argmax(sizes))
    return region & content


def _otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of ``values`` (maximal between-class variance)."""
    v = values[np.isfinite(values)]
    if len(v) == 0 or v.min() == v.max():
        return float(v.min()) if len(v) else 0.0
    hist, edges = np.histogram(v, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu0 = m0 / w0
        mu1 = (m0[-1] - m0) / w1
        between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centers[int(np.nanargmax(between))])


def reliability_table(
    probabilities: Any, masks: Any, regions: Any, bins: int = 10
) -> list[dict[str, float]]:
    """Error rate per analog-output bin on leaf pixels: for each of ``bins`` equal bins of p,
    the pixel count and the share of pixels whose prediction (p >= 0.5) disagrees with the
    mask. Pixels outside ``regions`` are left out. Notebook 05's reliability curve."""
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    m = np.asarray(masks).ravel() > 0.5
    r = np.asarray(regions, dtype=bool).ravel()
    if not p.shape == m.shape == r.shape:
        raise ValueError("probabilities, masks and regions differ in size")
    p, m = p[r], m[r]
    b = np.minimum((p * bins).astype(int), bins - 1)
    wrong = (p >= LEAF_THRESHOLD) != m
    rows = []
    for i in range(bins):
        sel = b == i
        n = int(sel.sum())
        rows.append({"p_lo": i / bins, "p_hi": (i + 1) / bins, "n": n,
                     "error_rate": float(wrong[sel].mean()) if n else float("nan")})
    return rows


def leaf_pixel_stats(
    probabilities: Any, masks: Any, threshold: float = 0.5, high_p: float = 0.8
) -> dict[str, float]:
    """Pixel statistics of analog leaf outputs against the masks, pooled over images.

    ``probabilities`` float in [0,1] and ``masks`` {0,1}, same shape ((N,)H,W). Returns dice,
    iou, outside_fraction (predicted-disease pixels outside the mask / predicted), missed_fraction
    (mask pixels predicted healthy / mask pixels), precision_mid / precision_high (share of mask
    pixels among pixels with threshold <= p < high_p / p >= high_p; NaN when empty), their pixel
    counts n_mid / n_high, and the threshold.
    """

    def arr(x: Any) -> np.ndarray:
        return x.detach().float().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)

    p = arr(probabilities).astype(np.float64).ravel()
    m = arr(masks).astype(np.float64).ravel() > 0.5
    if p.shape != m.shape:
        raise ValueError(f"probabilities {p.shape} and masks {m.shape} differ in size")
    pred = p >= threshold
    tp = float((pred & m).sum())
    fp = float((pred & ~m).sum())
    fn = float((~pred & m).sum())
    mid = (p >= threshold) & (p < high_p)
    high = p >= high_p
    return {
        "threshold": float(threshold),
        "dice": dice_from_counts(tp, fp, fn),
        "iou": iou_from_counts(tp, fp, fn),
        "outside_fraction": fp / (tp + fp) if tp + fp else 0.0,
        "missed_fraction": fn / (tp + fn) if tp + fn else 0.0,
        "precision_mid": float(m[mid].mean()) if mid.any() else float("nan"),
        "precision_high": float(m[high].mean()) if high.any() else float("nan"),
        "n_mid": float(mid.sum()),
        "n_high": float(high.sum()),
    }
