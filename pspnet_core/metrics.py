"""Segmentation metrics from an accumulated confusion matrix (PAPER.md section 6).

Everything is computed from one integer confusion matrix ``cm[target, prediction]`` summed over
the whole held-out set (not averaged per batch), so the numbers do not depend on the batch size
and can be summed across DDP ranks with a single ``all_reduce``.

- VOC (K > 1): prediction = argmax over the K class maps; pixels labelled ``ignore_index`` (255,
  object borders) are skipped. mIoU is the mean IoU over the classes *present* (union > 0, i.e.
  the class occurs in the labels or in the predictions); absent classes do not count as 0 or 1.
- Leaf (K = 1): prediction = sigmoid(logit) > 0.5 (i.e. logit > 0), label = target > 0.5; a 2x2
  confusion matrix gives Dice = 2TP / (2TP + FP + FN) and IoU = TP / (TP + FP + FN) of the
  disease class (1.0 when both prediction and label are empty everywhere).
"""

from __future__ import annotations

import torch
from torch import Tensor

IGNORE_INDEX = 255


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


def dice(cm2: Tensor) -> float:
    """Dice of class 1 from a 2x2 confusion matrix (1.0 when both sides are empty)."""
    tp, fp, fn = float(cm2[1, 1]), float(cm2[0, 1]), float(cm2[1, 0])
    denom = 2 * tp + fp + fn
    return 2 * tp / denom if denom > 0 else 1.0


def binary_iou(cm2: Tensor) -> float:
    """IoU (Jaccard) of class 1 from a 2x2 confusion matrix (1.0 when both sides are empty)."""
    tp, fp, fn = float(cm2[1, 1]), float(cm2[0, 1]), float(cm2[1, 0])
    denom = tp + fp + fn
    return tp / denom if denom > 0 else 1.0


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
