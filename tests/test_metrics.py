"""Metrics against hand-counted examples."""

import math

import pytest
import torch

from pspnet_core import metrics


def test_confusion_matrix_counts_and_ignores_255():
    target = torch.tensor([[0, 0, 1, 255], [2, 2, 1, 1]])
    pred = torch.tensor([[0, 1, 1, 2], [2, 0, 1, 1]])
    cm = metrics.confusion_matrix(pred, target, num_classes=3)
    expected = torch.tensor([[1, 1, 0], [0, 3, 0], [1, 0, 1]])
    assert torch.equal(cm, expected)
    assert cm.sum() == 7  # the 255 pixel is not counted


def test_miou_over_present_classes_and_pixel_accuracy():
    target = torch.tensor([0, 0, 1, 1])
    pred = torch.tensor([0, 1, 1, 1])
    cm = metrics.confusion_matrix(pred, target, num_classes=4)  # classes 2, 3 absent
    iou = metrics.per_class_iou(cm)
    assert iou[0] == pytest.approx(1 / 2)
    assert iou[1] == pytest.approx(2 / 3)
    assert math.isnan(iou[2]) and math.isnan(iou[3])
    assert metrics.mean_iou(cm) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert metrics.pixel_accuracy(cm) == pytest.approx(3 / 4)


def test_class_predicted_but_absent_counts_as_zero():
    cm = metrics.confusion_matrix(torch.tensor([0, 2]), torch.tensor([0, 0]), num_classes=3)
    assert metrics.mean_iou(cm) == pytest.approx((0.5 + 0.0) / 2)


def test_out_of_range_label_is_an_error():
    with pytest.raises(ValueError, match="labels must be in 0..2"):
        metrics.confusion_matrix(torch.tensor([0]), torch.tensor([7]), num_classes=3)


def test_segmetrics_accumulates_over_batches_like_one_batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, 8, 8, generator=g)
    target = torch.randint(0, 5, (6, 8, 8), generator=g)
    target[:, 0] = 255
    whole = metrics.SegMetrics(5)
    whole.update(logits, target)
    parts = metrics.SegMetrics(5)
    for i in range(0, 6, 4):
        parts.update(logits[i : i + 4], target[i : i + 4])
    assert torch.equal(whole.cm, parts.cm)
    assert whole.compute() == parts.compute()
    assert 0.0 <= whole.compute()["miou"] <= 1.0


def test_binary_dice_and_iou_threshold_half():
    # probabilities 0.9, 0.6, 0.4, 0.1 -> predicted 1, 1, 0, 0
    probs = torch.tensor([0.9, 0.6, 0.4, 0.1])
    logits = torch.log(probs / (1 - probs)).reshape(1, 1, 1, 4)
    target = torch.tensor([1.0, 0.0, 1.0, 0.0]).reshape(1, 1, 4)
    m = metrics.SegMetrics(1)
    m.update(logits, target)
    out = m.compute()
    # TP=1, FP=1, FN=1
    assert out["dice"] == pytest.approx(2 / 4)
    assert out["iou"] == pytest.approx(1 / 3)
    assert out["pixel_acc"] == pytest.approx(2 / 4)


def test_binary_empty_prediction_and_label_is_perfect():
    m = metrics.SegMetrics(1)
    m.update(torch.full((1, 1, 2, 2), -5.0), torch.zeros(1, 2, 2))
    assert m.compute()["dice"] == 1.0 and m.compute()["iou"] == 1.0


def test_leaf_threshold_is_one_rule_in_the_history_and_the_figures():
    """A pixel at exactly p = 0.5 (logit 0) is disease for the training history's Dice
    (binary_confusion) as for the figures, the claims and the explorer (p >= 0.5)."""
    from pspnet_core.metrics import LEAF_THRESHOLD, binary_confusion, leaf_pixel_stats

    logits = torch.tensor([[[0.0, -1.0], [1.0, -3.0]]])  # p = 0.5, 0.27, 0.73, 0.05
    target = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
    cm = binary_confusion(logits, target)
    assert cm.tolist() == [[1, 0], [1, 2]]  # rows: label 0/1; columns: prediction 0/1
    p = torch.sigmoid(logits).numpy()
    predicted = p >= LEAF_THRESHOLD
    assert int(predicted.sum()) == int(cm[:, 1].sum()) == 2
    stats = leaf_pixel_stats(p, target.numpy())
    assert stats is not None


def test_one_iou_definition_for_a_matrix_and_a_stack_of_images():
    """per_class_iou / pixel_accuracies of a stack (one confusion matrix per image) equal the
    single-matrix values image by image: the explorer's per-image table uses the same rule."""
    from pspnet_core.metrics import per_class_iou, pixel_accuracies, pixel_accuracy

    stack = torch.tensor([[[3, 1, 0], [0, 2, 0], [0, 0, 0]],
                          [[0, 0, 0], [0, 0, 0], [0, 0, 0]],
                          [[1, 0, 2], [0, 0, 0], [1, 0, 4]]])
    together = per_class_iou(stack)
    for i, cm in enumerate(stack):
        assert torch.equal(together[i].isnan(), per_class_iou(cm).isnan())
        assert torch.allclose(together[i].nan_to_num(-1), per_class_iou(cm).nan_to_num(-1))
        acc = pixel_accuracy(cm)
        assert (math.isnan(acc) and math.isnan(float(pixel_accuracies(stack)[i]))) or \
            acc == float(pixel_accuracies(stack)[i])
    assert together[0, 0] == 3 / 4 and math.isnan(together[0, 2]) and together[2, 2] == 4 / 7
