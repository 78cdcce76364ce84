"""Inference on trained runs: what the notebooks compute from them (docs/method.md#figures,
figs. 6-9 and 11-13).

- :func:`load_model`: a trained run's network (last completed epoch) in eval mode.
- :func:`predict`: main-head logits of a model for a batch, in the run's precision.
- :func:`per_image_losses`: main-head loss of ``n`` seeded random images of a split.
- :func:`ranked_losses`: per-image main-head loss of ``n`` random images of a split, with a
  scene-complexity score per image (claim 4), cached next to the run's checkpoint so the
  gallery and claims notebooks compute it once.
- :func:`gallery_tiles`: input, label and prediction of chosen images, ready for
  :func:`pspnet_core.results.plots.loss_gallery`.
- :func:`leaf_outputs`: analog (sigmoid) maps of the one-class run on held-out leaves, the leaf
  pixels, and held-out pixel statistics (claim 7, :func:`pspnet_core.metrics.leaf_pixel_stats`);
  cached per run hash. :func:`reliability` and :func:`leaf_review_components` read them.
- :func:`gallery_ends`: the lowest and highest images of a ranking, never the same image.
- :func:`predictions`: label and predicted maps, per-image loss, confusion matrix and scene
  complexity of every image of a split (the leaf run: its analog maps too), cached per run hash
  (what the explorer, :mod:`pspnet_core.results.explore`, reads); :func:`class_probability` the
  softmax map of one image.
- :func:`per_class_iou_table`: IoU per class (rows) and run (columns), the mean over seeds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from pspnet_core import data
from pspnet_core.losses import segmentation_loss
from pspnet_core.metrics import (
    IGNORE_INDEX,
    binary_confusion,
    binary_iou,
    confusion_matrix,
    leaf_pixel_stats,
    leaf_region,
    mean_iou,
    per_class_iou,
    pixel_accuracy,
    reliability_table,
    scene_complexity,
)
from pspnet_core.model import build_model
from pspnet_core.store.runs import Run, load_state
from pspnet_core.system.atomic import atomic_path, atomic_write_text
from pspnet_core.system.device import autocast, resolve_device

Split = Literal["train", "heldout"]


def load_model(run: Run, device: str | torch.device = "cpu") -> nn.Module:
    """The trained network of ``run`` (PSPNet or U-Net, ``run_cfg.arch``; last completed
    epoch) in eval mode on ``device``; :class:`pspnet_core.store.runs.RunNotTrainedError` without a
    checkpoint."""
    state = run.checkpoint(map_location="cpu")
    # the checkpoint holds every weight: do not fetch pretrained ones again, and freeze nothing
    # (inference only; freezing a weights=None backbone would warn about random weights)
    model_cfg = dataclasses.replace(run.run_cfg.model, weights=None, freeze_backbone=False)
    model = build_model(model_cfg, run.run_cfg.num_classes, arch=run.run_cfg.arch)
    load_state(model, state["model"], run.checkpoint_path)
    return model.to(device).eval()


@torch.no_grad()
def predict(
    model: nn.Module, images: Tensor, precision: str = "fp32", channels_last: bool = False
) -> Tensor:
    """Main-head logits ``(B, K, H, W)`` (float32, on the model's device) for ``images``
    ``(B, 3, H, W)`` or one ``(3, H, W)``; the model is put in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    x = images.unsqueeze(0) if images.dim() == 3 else images  # (B, 3, H, W)
    x = x.to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(device, precision):
        main, _ = model(x, with_aux=False)
    return main.float()


def per_image_losses(
    run: Run, split: Split, n: int, seed: int, device: str | torch.device = "auto",
    batch_size: int | None = None, with_metrics: bool = False,
) -> pd.DataFrame:
    """Main-head loss of ``n`` randomly chosen images (seeded; ``n`` capped at the dataset size)
    of ``split`` ("train" or "heldout"), without augmentation (``data.build_eval_dataset``).

    Returns ``DataFrame[index, id, loss]`` in dataset-index order; ``index`` indexes the
    evaluation dataset (``data.build_eval_dataset(run.run_cfg, split)[index]``). With
    ``with_metrics`` also ``miou`` and ``pixel_acc``: each image's own
    :func:`pspnet_core.metrics.mean_iou` / ``pixel_accuracy`` (classes present in its label or
    prediction; ignore pixels skipped); for the one-class task ``miou`` is the disease IoU
    (:func:`pspnet_core.metrics.binary_iou`).
    """
    rc = run.run_cfg
    ds = data.build_eval_dataset(rc, split)
    k = min(int(n), len(ds))
    chosen = np.sort(np.random.default_rng(seed).choice(len(ds), size=k, replace=False))
    dev = resolve_device(device)
    model = load_model(run, dev)
    loader = DataLoader(Subset(ds, chosen.tolist()), batch_size=batch_size or rc.eval_batch_size,
                        shuffle=False, num_workers=0)
    losses, mious, accs = [], [], []
    for images, target in loader:
        logits = predict(model, images, rc.precision, rc.channels_last)  # (B, K, H, W)
        target = target.to(dev)
        losses.append(segmentation_loss(logits, target, reduction="per_image").cpu())
        for lg, tg in zip(logits, target, strict=True):  # (K, H, W), (H, W): one image
            if rc.num_classes == 1:
                cm = binary_confusion(lg[None], tg[None]).cpu()
                mious.append(binary_iou(cm))
            else:
                cm = confusion_matrix(lg.argmax(0), tg, rc.num_classes).cpu()
                mious.append(mean_iou(cm))
            accs.append(pixel_accuracy(cm))
    loss = torch.cat(losses).double().numpy() if losses else np.zeros(0)
    ids = [ds.ids[i] for i in chosen] if hasattr(ds, "ids") else [str(i) for i in chosen]
    frame = pd.DataFrame({"index": chosen.astype(int), "id": ids, "loss": loss})
    if with_metrics:
        frame["miou"] = np.asarray(mious, dtype=float)
        frame["pixel_acc"] = np.asarray(accs, dtype=float)
    return frame


# columns of the cached frame; the "-miou" in the file name keeps caches written before the
# per-image mIoU existed (per_image_losses-<split>-n<n>-seed<seed>.csv) from being read
RANKED_COLUMNS = ("index", "id", "loss", "miou", "pixel_acc", "complexity", "split")


def _losses_file(run: Run, split: Split, n: int, seed: int):
    return run.dir / f"per_image_losses-{split}-n{n}-seed{seed}-miou.csv"


# "crop complexity": complexity is taken on the evaluated crop (loss_complexity); caches whose
# header lacks it hold the raw mask's and are recomputed
LOSSES_HEADER = "# pspnet_core per-image losses, crop complexity"


def _losses_text(run: Run, frame: pd.DataFrame) -> str:
    """The cache file: a header carrying the run hash and the sha256 of the table below it."""
    body = frame.to_csv(index=False)
    digest = hashlib.sha256(body.encode()).hexdigest()
    return f"{LOSSES_HEADER}; run {run.hash}; sha256 {digest}\n{body}"


def _read_losses_cache(run: Run, path: Path) -> pd.DataFrame | None:
    """The cached frame if the file is a regular file written for this run (its hash) and not
    changed since (its sha256), with every column and finite, non-negative losses; None when it
    must be recomputed (missing, unreadable, another run's, edited, garbage)."""
    try:
        if not path.is_file() or path.stat().st_size > 64 * 2**20:
            return None
        text = path.read_bytes().decode("utf-8")
        header, _, body = text.partition("\n")
        want = f"{LOSSES_HEADER}; run {run.hash}; sha256 "
        if not header.startswith(want):
            return None
        if hashlib.sha256(body.encode()).hexdigest() != header[len(want):].strip():
            return None
        cached = pd.read_csv(io.StringIO(body), dtype={"id": str})
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError):
        return None
    if not set(RANKED_COLUMNS) <= set(cached.columns) or cached.empty:
        return None
    loss = pd.to_numeric(cached["loss"], errors="coerce")
    if not (np.isfinite(loss) & (loss >= 0)).all():
        return None
    return cached


def ranked_losses(run: Run, split: Split, n: int, seed: int) -> pd.DataFrame:
    """``DataFrame[index, id, loss, miou, pixel_acc, complexity, split]`` of ``n`` seeded random
    images (:func:`per_image_losses`), sorted by loss (lowest first). Cached as
    ``per_image_losses-<split>-n<n>-seed<seed>-miou.csv`` in the run folder, with a header line
    holding the run hash and the sha256 of the table; the cache is only trusted for a finished
    run, and recomputed (and rewritten) when it is unreadable, another run's, edited or lacks a
    column."""
    path = _losses_file(run, split, n, seed)
    done = run.done
    if done:
        cached = _read_losses_cache(run, path)
        if cached is not None:
            return cached
    frame = per_image_losses(run, split, n=n, seed=seed, with_metrics=True)
    ds = data.build_eval_dataset(run.run_cfg, split)
    frame["complexity"] = [loss_complexity(ds, int(i)) for i in frame["index"]]
    frame["split"] = split
    frame = frame.sort_values("loss", kind="stable").reset_index(drop=True)
    if done and not (os.path.lexists(path) and not path.is_file()):  # never over a FIFO/folder
        atomic_write_text(path, _losses_text(run, frame))
    return frame


def loss_complexity(ds: Any, index: int) -> float:
    """Claim 4(a)'s scene complexity (:func:`metrics.scene_complexity`) on exactly the pixels the
    per-image loss is computed on (paper section 4.3): the evaluation target ``ds[index][1]``
    (the central square crop or the letterbox at the input size), not the raw mask, whose parts
    outside the crop never reach the loss. Padding the transform adds is not part of the scene
    (found by sending an all-ones mask through the same deterministic transform); 255 pixels
    inside the crop (VOC's void bands, ignored by the loss) take their nearest label as in
    :func:`metrics.scene_complexity`."""
    image, mask = ds.load_raw(index)
    target = ds[index][1]
    region = None
    if ds.transform is not None:
        extent = ds.transform(image=image, mask=np.ones_like(mask))["mask"]
        region = np.asarray(extent) == 1
    return scene_complexity(target, region=region)["complexity"]


def gallery_tiles(
    run: Run, split: Split, indices: list[int], model: torch.nn.Module | None = None
) -> dict[str, np.ndarray]:
    """Inputs (uint8 (N, H, W, 3)), labels (N, H, W) and predicted label maps (N, H, W) of
    the evaluation dataset's images ``indices`` (deterministic ``none`` transform)."""
    rc = run.run_cfg
    ds = data.build_eval_dataset(rc, split)
    model = model if model is not None else load_model(run, "cpu")
    items = [ds[int(i)] for i in indices]
    images = torch.stack([img for img, _ in items])  # (N, 3, H, W)
    labels = torch.stack([lab for _, lab in items])  # (N, H, W)
    logits = predict(model, images, rc.precision, rc.channels_last)  # (N, K, H, W)
    if rc.num_classes == 1:
        predictions = (logits[:, 0] > 0).long()
    else:
        predictions = logits.argmax(1)  # (N, H, W)
    return {
        "images": np.stack([data.denormalize(img, rc.augment.normalize) for img in images]),
        "labels": labels.numpy(),
        "predictions": predictions.cpu().numpy(),
    }


LEAF_KEYS = ("images", "masks", "probabilities", "regions")


def cached_arrays(run: Run, cache: Path, keys: tuple[str, ...],
                  compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The arrays ``keys`` of a finished run's ``.npz`` cache (its name carries the run hash);
    ``compute()`` and (for a finished run) an atomic write of the cache when the file is
    missing, unreadable or lacks a key."""
    if run.done and cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                return {k: z[k] for k in keys}
        except Exception:  # noqa: BLE001 - a cache we wrote: unreadable in any way means
            pass  # damaged, empty or foreign (EOFError, zlib.error, BadZipFile...): recomputed
    arrays = compute()
    if run.done:
        with atomic_path(cache) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return arrays


def _leaf_cache(run: Run) -> Path:
    return run.dir / f"leaf_outputs-{run.hash}.npz"


def leaf_outputs(run: Run, threshold: float = 0.5) -> dict[str, object]:
    """The one-class run on every held-out leaf: images (uint8), masks {0,1}, analog maps
    ``sigmoid(logits)`` in [0, 1], the leaf pixels (``regions``, :func:`metrics.leaf_region`),
    ids, and :func:`pspnet_core.metrics.leaf_pixel_stats`.

    A finished run's maps are cached as ``leaf_outputs-<run hash>.npz`` in its folder and
    recomputed when that file is missing, unreadable or lacks a key (notebooks 05 and 06 read
    the same maps)."""
    rc = run.run_cfg
    if rc.num_classes != 1:
        raise ValueError(f"run {run.name!r} has {rc.num_classes} classes; the leaf run has 1")
    ds = data.build_eval_dataset(rc, "heldout")
    arrays = cached_arrays(run, _leaf_cache(run), LEAF_KEYS, lambda: _leaf_arrays(run, ds))
    return {"ids": list(ds.ids), **arrays,
            "stats": leaf_pixel_stats(arrays["probabilities"], arrays["masks"],
                                      threshold=threshold)}


def _leaf_arrays(run: Run, ds) -> dict[str, np.ndarray]:
    rc = run.run_cfg
    model = load_model(run, "cpu")
    images, masks, probs = [], [], []
    for start in range(0, len(ds), rc.eval_batch_size):
        batch = [ds[i] for i in range(start, min(start + rc.eval_batch_size, len(ds)))]
        x = torch.stack([img for img, _ in batch])  # (B, 3, H, W)
        logits = predict(model, x, rc.precision, rc.channels_last)  # (B, 1, H, W)
        probs.append(torch.sigmoid(logits[:, 0]).numpy())
        masks.append(torch.stack([m for _, m in batch]).numpy())
        images.extend(data.denormalize(img, rc.augment.normalize) for img in x)
    img = np.stack(images)  # (N, H, W, 3) uint8
    mask = np.concatenate(masks)  # (N, H, W)
    regions = np.stack([leaf_region(i, m) for i, m in zip(img, mask, strict=True)])
    return {"images": img, "masks": mask, "probabilities": np.concatenate(probs),
            "regions": regions}


REVIEW_KINDS = ("outside", "missed", "off_leaf")


def leaf_review_components(
    leaf: Mapping[str, Any], k: int = 6, threshold: float = 0.5, pad: int = 4,
    k_off_leaf: int = 3,
) -> list[dict[str, Any]]:
    """Claim 7 (b)/(c) for a person to judge (paper section 4.4, Fig. 13's circles): over all
    held-out leaves, the ``k`` largest connected components of predicted disease (p >=
    ``threshold``) on the leaf outside the mask ("outside": a spot the labels missed, or an
    error), the ``k`` largest mask components the network missed ("missed"), and the
    ``k_off_leaf`` largest predicted-disease components off the leaf region ("off_leaf": a hand
    or background marked as disease, the paper's red circle; letterbox padding, exact black,
    left out). Each: kind, leaf index and id, area (px), box, and crops (image, mask, leaf
    region, probability) of its bounding box grown by ``pad`` px."""
    probs, masks = np.asarray(leaf["probabilities"]), np.asarray(leaf["masks"]) > 0.5
    regions = np.asarray(leaf["regions"], dtype=bool)
    images = np.asarray(leaf["images"])
    found: dict[str, list[dict[str, Any]]] = {kind: [] for kind in REVIEW_KINDS}
    for i, (p, m, r) in enumerate(zip(probs, masks, regions, strict=True)):
        pred = p >= threshold
        content = images[i].sum(-1) > 0  # not padding (metrics.leaf_region)
        for kind, sel in (("outside", pred & ~m & r), ("missed", m & ~pred & r),
                          ("off_leaf", pred & ~r & content)):
            lab, n = ndimage.label(sel)
            for j, box in enumerate(ndimage.find_objects(lab), start=1):
                area = int((lab[box] == j).sum())
                y0, y1 = max(0, box[0].start - pad), min(p.shape[0], box[0].stop + pad)
                x0, x1 = max(0, box[1].start - pad), min(p.shape[1], box[1].stop + pad)
                found[kind].append({
                    "kind": kind, "leaf_index": i, "id": leaf["ids"][i], "area": area,
                    "box": (y0, y1, x0, x1),
                    "image": images[i][y0:y1, x0:x1],
                    "mask": m[y0:y1, x0:x1], "region": r[y0:y1, x0:x1],
                    "probability": p[y0:y1, x0:x1],
                })
    out = []
    for kind, n_kind in zip(REVIEW_KINDS, (k, k, k_off_leaf), strict=True):
        out += sorted(found[kind], key=lambda c: (-c["area"], c["leaf_index"]))[:n_kind]
    return out


def reliability(leaf: Mapping[str, Any], bins: int = 10) -> pd.DataFrame:
    """Error rate per bin of the analog output p on leaf pixels
    (:func:`metrics.reliability_table`): notebook 05's reliability curve."""
    return pd.DataFrame(reliability_table(leaf["probabilities"], leaf["masks"],
                                          leaf["regions"], bins))


def gallery_ends(frame: pd.DataFrame, n_show: int) -> dict[str, Any]:
    """The lowest- and highest-loss images of a ranked frame (sorted by loss, lowest first)
    for Figs. 6-9, never sharing an image: ``k = min(n_show, N // 2)`` each. Returns
    ``{"lowest": frame, "highest": frame (highest first), "k": k, "n": N}``."""
    n = len(frame)
    k = min(n_show, n // 2)
    return {"lowest": frame.head(k), "highest": frame.tail(k).iloc[::-1], "k": k, "n": n}


def seed_table(per_seed: Mapping[int, Mapping[str, float]]) -> pd.DataFrame:
    """One row per quantity: its value for each seed, then mean, sd (n - 1), min and max.

    ``per_seed`` maps a seed to named numbers, e.g. ``{0: {"held-out Dice": 0.61}, 1: {...}}``;
    the notebooks report numbers that come from several seeds as mean and spread with it.
    """
    frame = pd.DataFrame({f"seed {s}": dict(values) for s, values in per_seed.items()})
    values = frame.astype(float)
    frame["mean"] = values.mean(axis=1)
    frame["sd"] = values.std(axis=1, ddof=1)
    frame["min"] = values.min(axis=1)
    frame["max"] = values.max(axis=1)
    return frame


# ---------------------------------------------------------------- every image of a split

PREDICTION_KEYS = ("index", "ids", "labels", "predictions", "confusion", "loss", "complexity")


def _predictions_cache(run: Run, split: Split) -> Path:
    return run.dir / f"predictions-{split}-{run.hash}.npz"


def predictions(run: Run, split: Split, device: str | torch.device = "auto") -> dict[str, Any]:
    """Every image of ``split`` through the run's network, without augmentation
    (``data.build_eval_dataset``): ``index`` (dataset index), ``ids``, ``labels`` and
    ``predictions`` uint8 (N, H, W) (255 = ignore in labels; the leaf run: 0/1 at p >= 0.5),
    ``confusion`` int64 (N, K, K) per image (rows label, columns prediction; K = 2 for the leaf
    run), ``loss`` (the main head's loss per image), ``complexity`` (of the raw label mask,
    :func:`metrics.scene_complexity`) and, for the one-class run, ``probabilities`` float16
    (N, H, W) = sigmoid(logits).

    A finished run's arrays are cached as ``predictions-<split>-<run hash>.npz`` in its folder
    and recomputed when that file is missing, unreadable or lacks a key; computed once per
    (run, seed, split)."""
    cache = _predictions_cache(run, split)
    leaf = run.run_cfg.num_classes == 1
    keys = PREDICTION_KEYS + (("probabilities",) if leaf else ())

    def compute() -> dict[str, Any]:
        out = _prediction_arrays(run, split, device)
        return {**out, "ids": np.asarray(out["ids"], dtype=str)}

    out = cached_arrays(run, cache, keys, compute)
    return {**out, "ids": [str(i) for i in out["ids"]]}


def _prediction_arrays(run: Run, split: Split, device: str | torch.device) -> dict[str, Any]:
    rc = run.run_cfg
    leaf = rc.num_classes == 1
    k = 2 if leaf else rc.num_classes
    ds = data.build_eval_dataset(rc, split)
    dev = resolve_device(device)
    model = load_model(run, dev)
    labels, preds, confs, losses, probs = [], [], [], [], []
    for start in range(0, len(ds), rc.eval_batch_size):
        batch = [ds[i] for i in range(start, min(start + rc.eval_batch_size, len(ds)))]
        x = torch.stack([img for img, _ in batch])
        target = torch.stack([lab for _, lab in batch]).to(dev)
        logits = predict(model, x, rc.precision, rc.channels_last)  # (B, K, H, W)
        losses.append(segmentation_loss(logits, target, reduction="per_image").double().cpu())
        if leaf:
            p = torch.sigmoid(logits[:, 0])
            pred, lab = (p >= 0.5).long(), (target > 0.5).long()
            probs.append(p.half().cpu().numpy())
            ignore = -1
        else:
            pred, lab, ignore = logits.argmax(1), target.long(), IGNORE_INDEX
        for pr, tg in zip(pred, lab, strict=True):
            confs.append(confusion_matrix(pr, tg, k, ignore_index=ignore).cpu().numpy())
        preds.append(pred.to(torch.uint8).cpu().numpy())
        labels.append(lab.clamp(0, 255).to(torch.uint8).cpu().numpy())
    n = len(ds)
    out: dict[str, Any] = {
        "index": np.arange(n),
        "ids": [str(i) for i in ds.ids] if hasattr(ds, "ids") else [str(i) for i in range(n)],
        "labels": np.concatenate(labels) if labels else np.zeros((0, 1, 1), np.uint8),
        "predictions": np.concatenate(preds) if preds else np.zeros((0, 1, 1), np.uint8),
        "confusion": np.stack(confs) if confs else np.zeros((0, k, k), np.int64),
        "loss": torch.cat(losses).numpy() if losses else np.zeros(0),
        "complexity": np.asarray([scene_complexity(ds.load_raw(i)[1])["complexity"]
                                  for i in range(n)], dtype=float),
    }
    if leaf:
        out["probabilities"] = np.concatenate(probs) if probs else np.zeros((0, 1, 1), np.float16)
    return out


@torch.no_grad()
def class_probability(model: nn.Module, run: Run, image: Tensor) -> np.ndarray:
    """Softmax (multi-class) or sigmoid (one-class) maps float32 (K, H, W) of one evaluation
    image ``(3, H, W)`` (``data.build_eval_dataset(...)[i][0]``)."""
    rc = run.run_cfg
    logits = predict(model, image, rc.precision, rc.channels_last)[0]  # (K, H, W)
    p = torch.sigmoid(logits) if rc.num_classes == 1 else torch.softmax(logits, dim=0)
    return p.cpu().numpy()


def iou_per_class(confusion: Any) -> np.ndarray:
    """IoU per class from a (K, K) confusion matrix (or the sum of a stack (N, K, K)); NaN for a
    class absent from labels and predictions (:func:`metrics.per_class_iou`)."""
    cm = np.asarray(confusion)
    if cm.ndim == 3:
        cm = cm.sum(0)
    return per_class_iou(torch.as_tensor(cm)).numpy()


def per_class_iou_table(
    runs: Mapping[str, Mapping[int, Run]], split: Split = "heldout",
    names: list[str] | None = None, per_seed: bool = False,
) -> pd.DataFrame:
    """IoU per class (rows: ``names`` or class ids) of each run (columns), from the confusion
    matrix of all of ``split``'s images (:func:`predictions`), as the mean over the seeds
    (NaN-aware: a class a seed never saw nor predicted does not count). The last row, "mean
    (mIoU)", is the mean over present classes of each seed, averaged over seeds. With
    ``per_seed`` the columns are (run, seed) instead."""
    columns: dict[Any, np.ndarray] = {}
    means: dict[Any, list[float]] = {}
    for name, by_seed in runs.items():
        per = []
        for seed, run in by_seed.items():
            iou = iou_per_class(predictions(run, split)["confusion"])
            per.append(iou)
            if per_seed:
                columns[(name, seed)] = iou
                means[(name, seed)] = [float(np.nanmean(iou)) if np.isfinite(iou).any()
                                       else float("nan")]
        stack = np.stack(per)
        if not per_seed:
            with np.errstate(all="ignore"):
                columns[name] = np.array([np.nan if np.isnan(c).all() else np.nanmean(c)
                                          for c in stack.T])
            means[name] = [float(np.nanmean(i)) if np.isfinite(i).any() else float("nan")
                           for i in per]
    k = len(next(iter(columns.values()))) if columns else 0
    index = list(names) if names is not None and len(names) == k else list(range(k))
    frame = pd.DataFrame(columns, index=index)
    frame.loc["mean (mIoU)"] = [float(np.mean(means[c])) for c in frame.columns]
    if per_seed:
        frame.columns = pd.MultiIndex.from_tuples(frame.columns, names=["run", "seed"])
    frame.index.name = "class"
    return frame
