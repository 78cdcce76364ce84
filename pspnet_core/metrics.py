"""Segmentation metrics from an accumulated confusion matrix (docs/method.md#metrics).

Everything is computed from one integer confusion matrix ``cm[target, prediction]`` summed over
the whole held-out set (not averaged per batch), so the numbers do not depend on the batch size
and can be summed across DDP ranks with a single ``all_reduce``.

- VOC (K > 1): prediction = argmax over the K class maps; pixels labelled ``ignore_index`` (255,
  object borders) are skipped. mIoU is the mean IoU over the classes *present* (union > 0, i.e.
  the class occurs in the labels or in the predictions); absent classes do not count as 0 or 1.
- Leaf (K = 1): prediction = sigmoid(logit) > 0.5 (i.e. logit > 0), label = target > 0.5; a 2x2
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
    """IoU per class (float64); NaN for classes absent from both labels and predictions."""
    cm = cm.double()
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp
    iou = tp / union
    iou[union == 0] = float("nan")
    return iou


def mean_iou(cm: Tensor) -> float:
    """Mean IoU over present classes (union > 0); NaN if nothing was counted."""
    iou = per_class_iou(cm)
    present = ~torch.isnan(iou)
    return float(iou[present].mean()) if present.any() else float("nan")


def pixel_accuracy(cm: Tensor) -> float:
    """Correct pixels / counted pixels (ignored pixels excluded)."""
    total = cm.sum()
    return float(cm.diag().sum().double() / total) if total > 0 else float("nan")


def binary_confusion(
    logits: Tensor, target: Tensor, threshold: float = 0.5
) -> Tensor:
    """2x2 counts for the one-class task: prediction = sigmoid(logits) > threshold.

    ``logits`` ``(B, 1, H, W)`` or ``(B, H, W)``; ``target`` float ``(B, H, W)`` in [0, 1]
    (binarized at 0.5).
    """
    if logits.dim() == target.dim() + 1:
        logits = logits.squeeze(1)
    pred = torch.sigmoid(logits.float()) > threshold
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


def scene_complexity(label: Any, ignore_index: int = IGNORE_INDEX) -> dict[str, float]:
    """How complex a VOC label map is: classes present, foreground share, boundary share.

    ``boundary_fraction`` counts pixels that are ignore borders (255) or differ from their
    right / lower neighbour; ``complexity`` = boundary_fraction (small simple regions have few
    boundary pixels, cluttered scenes many). Add these as columns to the gallery frames.
    """
    lab = label.detach().cpu().numpy() if hasattr(label, "detach") else np.asarray(label)
    valid = lab != ignore_index
    classes = np.unique(lab[valid])
    fg = float(((lab != 0) & valid).sum() / max(valid.sum(), 1))
    edge = np.zeros(lab.shape, dtype=bool)
    edge[:, :-1] |= lab[:, 1:] != lab[:, :-1]
    edge[:-1, :] |= lab[1:, :] != lab[:-1, :]
    edge |= ~valid
    bf = float(edge.mean())
    return {
        "n_classes": int(len(classes)),
        "foreground_fraction": fg,
        "boundary_fraction": bf,
        "complexity": bf,
    }


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
