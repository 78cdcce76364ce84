"""Claims 4 and 7: criteria on per-image and per-pixel evidence (docs/method.md#claims).

Claim 4 reads the ranked images of :func:`pspnet_core.results.analysis.ranked_losses`; claim 7 the
held-out leaf outputs of :func:`pspnet_core.results.analysis.leaf_outputs`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pspnet_core.claims.curves import (
    Histories,
    build_claim,
    by_seed,
    curves,
    mean_sd,
    missing_claim,
)
from pspnet_core.claims.statistics import (
    BOOT_SEED,
    N_BOOT,
    Claim,
    Part,
    auroc_from_histograms,
    make_part,
    resampled_interval,
    spearman_rows,
    untestable_part,
)
from pspnet_core.config import LEAF_RUN
from pspnet_core.metrics import leaf_pixel_stats, leaf_region

MIN_RHO = 0.3  # claim 4(a): Spearman rho(loss, complexity) >= 0.3
AUROC_MARGIN = 0.05  # claim 7(a): AUROC of the confidence for correctness >= 0.55
CONF_BINS = 200  # claim 7(a): confidence |2p - 1| binned for the AUROC


# ---------------------------------------------------------------- claim 4: ranked images


def _gallery_frame(galleries: Any) -> pd.DataFrame | None:
    """One frame from a frame, a dict split -> frame, or a list of frames."""
    if galleries is None:
        return None
    if isinstance(galleries, pd.DataFrame):
        return galleries
    if isinstance(galleries, Mapping):
        frames = []
        for split, df in galleries.items():
            df = df.copy()
            if "split" not in df:
                df["split"] = split
            frames.append(df)
        return pd.concat(frames, ignore_index=True) if frames else None
    return pd.concat(list(galleries), ignore_index=True)


def _galleries_by_seed(galleries: Any, seed: int | None) -> dict[int, pd.DataFrame]:
    """``{seed: frame}``: a mapping seed -> (frame or {split: frame}), or one gallery."""
    if galleries is None:
        return {}
    if isinstance(galleries, Mapping) and galleries and all(
        isinstance(k, (int, np.integer)) for k in galleries
    ):
        out = {int(s): _gallery_frame(g) for s, g in galleries.items()}
        return {s: f for s, f in out.items() if f is not None and len(f)}
    frame = _gallery_frame(galleries)
    return {int(seed or 0): frame} if frame is not None and len(frame) else {}


def top_k_gap(lt, mt, lh, mh, k: int) -> np.ndarray:
    """Rows: mean metric of the ``k`` highest-loss training images - that of the ``k``
    highest-loss held-out images. Inputs (B, n_train) / (B, n_heldout)."""
    ot = np.argsort(-lt, axis=-1, kind="stable")[:, :k]
    oh = np.argsort(-lh, axis=-1, kind="stable")[:, :k]
    return np.take_along_axis(mt, ot, -1).mean(-1) - np.take_along_axis(mh, oh, -1).mean(-1)


def half_samples(rng: np.random.Generator, n: int, b: int) -> np.ndarray:
    """(b, ceil(n/2)) indices: each row a subsample *without* replacement (no image twice)."""
    m = max(1, (n + 1) // 2)
    return np.argsort(rng.random((b, n)), axis=-1)[:, :m]


def claim4(
    galleries: Any,
    top_k: int = 16,
    complexity_column: str | None = None,
    metric_column: str | None = None,
    seed: int | None = None,
    n_boot: int = N_BOOT,
) -> Claim:
    """Per-image loss vs scene complexity (255 pixels ignored, :func:`metrics.scene_complexity`);
    the highest-loss held-out images are segmented worse than the highest-loss training ones.

    (b) compares the top ``k`` of each split; its interval comes from half-samples without
    replacement (top ``k/2`` of half the images, recentred on the full-sample effect), so no
    image can fill the top ``k`` twice.
    """
    crit = {
        "(a) loss grows with complexity": (
            f"Spearman rho(per-image loss, complexity) over all ranked images - {MIN_RHO:g} > 0"
            " (complexity: class-boundary share, 255 pixels ignored)"),
        "(b) high-loss held-out images segmented worse": (
            f"mean per-image mIoU of the {top_k} highest-loss training images - that of the "
            f"{top_k} highest-loss held-out images, > 0 (interval: half-samples without "
            "replacement)"),
    }
    labels = list(crit)
    frames = _galleries_by_seed(galleries, seed)
    frames = {s: f for s, f in frames.items() if {"loss", "split"} <= set(f.columns)}
    if not frames:
        return missing_claim(4, list(crit.items()),
                             "no per-image losses (ranked_losses frames with loss, split)")
    parts, ev = [], []
    rng = np.random.default_rng(BOOT_SEED)
    col = complexity_column or next(
        (c for c in ("complexity", "boundary_fraction", "n_classes")
         if all(c in f for f in frames.values())), None)
    if col is None:
        parts.append(untestable_part(labels[0], crit[labels[0]], "no complexity column"))
    else:
        data = {s: (f["loss"].astype(float).to_numpy(), f[col].astype(float).to_numpy())
                for s, f in frames.items()}
        rho = {s: float(spearman_rows(lo[None], cx[None])[0]) for s, (lo, cx) in data.items()}
        draws = {}
        for s, (lo, cx) in data.items():
            if len(lo) >= 3 and n_boot >= 10:
                idx = rng.integers(0, len(lo), (n_boot, len(lo)))
                draws[s] = spearman_rows(lo[idx], cx[idx]) - MIN_RHO
        parts.append(make_part(labels[0], crit[labels[0]],
                               {s: r - MIN_RHO for s, r in rho.items()},
                               resampled_interval(draws)))
        ev.append(f"(a) Spearman rho(loss, {col}) {mean_sd(list(rho.values()))}")
    mcol = metric_column or next(
        (c for c in ("miou", "pixel_acc") if all(c in f for f in frames.values())), None)
    split_data = {}
    for s, f in frames.items():
        t, h = f[f["split"] == "train"], f[f["split"] == "heldout"]
        if len(t) and len(h) and mcol is not None:
            split_data[s] = tuple(np.asarray(x[c], dtype=float)
                                  for x in (t, h) for c in ("loss", mcol))
    if mcol is None:
        parts.append(untestable_part(
            labels[1], crit[labels[1]],
            "no per-image mIoU or pixel accuracy column (analysis.ranked_losses adds them)"))
    elif not split_data:
        parts.append(untestable_part(labels[1], crit[labels[1]],
                                     "needs ranked images of both train and heldout"))
    else:
        ks = {s: min(top_k, len(d[0]), len(d[2])) for s, d in split_data.items()}
        gap = {s: float(top_k_gap(lt[None], mt[None], lh[None], mh[None], ks[s])[0])
               for s, (lt, mt, lh, mh) in split_data.items()}
        draws = {}
        for s, (lt, mt, lh, mh) in split_data.items():
            if n_boot >= 10 and len(lt) >= 2 and len(lh) >= 2:
                it, ih = half_samples(rng, len(lt), n_boot), half_samples(rng, len(lh), n_boot)
                kb = max(1, ks[s] // 2)
                draws[s] = top_k_gap(lt[it], mt[it], lh[ih], mh[ih], kb)
        crit_b = crit[labels[1]] if mcol == "miou" else crit[labels[1]].replace(
            "mIoU", mcol.replace("_", " "))
        parts.append(make_part(labels[1], crit_b, gap,
                               resampled_interval(draws, gap) if draws else None))
        top = {s: (float(d[1][np.argsort(-d[0], kind="stable")[:ks[s]]].mean()),
                   float(d[3][np.argsort(-d[2], kind="stable")[:ks[s]]].mean()))
               for s, d in split_data.items()}
        ev.append(
            f"(b) per-image {mcol} of the {', '.join(f's{s} {k}' for s, k in ks.items())} "
            f"highest-loss images: training {mean_sd([t for t, _ in top.values()])}, held-out "
            f"{mean_sd([h for _, h in top.values()])}"
        )
    n_img = {s: len(f) for s, f in frames.items()}
    ev.append("ranked images per seed: " + ", ".join(f"s{s} {n}" for s, n in n_img.items()))
    return build_claim(4, parts, "; ".join(ev))


# ---------------------------------------------------------------- claim 7: leaf pixels


def confidence_histograms(
    probabilities: Any, masks: Any, regions: Any, bins: int = CONF_BINS
) -> np.ndarray:
    """Per image, counts of leaf-region pixels by confidence ``|2p - 1|`` bin (``bins`` equal
    bins of [0, 1]) for correct and wrong pixels (prediction ``p >= 0.5`` vs mask):
    (N, 2, bins), index 0 = correct, 1 = wrong. Pixels outside ``regions`` are left out."""
    p = np.asarray(probabilities, dtype=np.float64)
    m = np.asarray(masks) > 0.5
    r = np.asarray(regions, dtype=bool)
    if p.ndim == 2:
        p, m, r = p[None], m[None], r[None]
    if not p.shape == m.shape == r.shape:
        raise ValueError(f"probabilities {p.shape}, masks {m.shape} and leaf regions {r.shape} "
                         "differ in shape")
    conf = np.abs(2 * p - 1)
    b = np.minimum((conf * bins).astype(int), bins - 1)
    wrong = (p >= 0.5) != m
    out = np.zeros((len(p), 2, bins))
    for i in range(len(p)):
        sel = r[i]
        out[i, 0] = np.bincount(b[i][sel & ~wrong[i]], minlength=bins)
        out[i, 1] = np.bincount(b[i][sel & wrong[i]], minlength=bins)
    return out


def confidence_auroc(hist: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray | float:
    """AUROC of the confidence for pixel correctness, pooled over images (rows ``idx`` (B, n)
    of the per-image histograms (N, 2, bins))."""
    h = hist.sum(0) if idx is None else hist[idx].sum(1)  # (2, bins) or (B, 2, bins)
    return auroc_from_histograms(h[..., 0, :], h[..., 1, :])


def auroc_part(label: str, criterion: str, hists: Mapping[int, np.ndarray],
               n_boot: int = N_BOOT) -> Part:
    """Claim 7(a) from per-seed confidence histograms ``{seed: (N, 2, bins)}``
    (:func:`confidence_histograms`): per seed, the pooled AUROC - 0.5 - ``AUROC_MARGIN``;
    interval: the seeds' t-interval and resamples of each seed's leaves (seeded). The
    calibration (``tools/calibrate_claims.py``) feeds it simulated histograms."""
    auc = {s: float(confidence_auroc(h)) for s, h in hists.items()}
    rng = np.random.default_rng(42)
    draws = {s: confidence_auroc(h, rng.integers(0, len(h), (n_boot, len(h))))
             - 0.5 - AUROC_MARGIN for s, h in hists.items() if n_boot >= 10}
    return make_part(label, criterion, {s: a - 0.5 - AUROC_MARGIN for s, a in auc.items()},
                     resampled_interval(draws) if draws else None)


def _leaf_by_seed(leaf: Any, seed: int | None) -> dict[int, Mapping[str, Any]]:
    if leaf is None:
        return {}
    if isinstance(leaf, Mapping) and leaf and all(
        isinstance(k, (int, np.integer)) for k in leaf
    ):
        return {int(s): v for s, v in leaf.items() if v is not None}
    if isinstance(leaf, Mapping):
        return {int(seed or 0): leaf}
    raise TypeError(f"leaf: expected a mapping, got {type(leaf)!r}")


def _regions(item: Mapping[str, Any]) -> np.ndarray:
    if item.get("regions") is not None:
        return np.asarray(item["regions"], dtype=bool)
    if item.get("images") is None:
        raise ValueError("leaf outputs need 'regions' or 'images' (to find the leaf)")
    return np.stack([leaf_region(im, mk) for im, mk in zip(item["images"], item["masks"],
                                                           strict=True)])


def claim7(
    histories: Histories | None = None,
    leaf: Any = None,
    run: str = LEAF_RUN,
    seed: int | None = None,
    n_boot: int = N_BOOT,
) -> Claim:
    """Leaf disease: (a) on leaf pixels, lower intensity means the network is less often right
    (testable); (b) spots the labels missed and (c) model errors need a person (the review
    figure of notebook 05), so at most *partly holds*.

    ``leaf``: ``{seed: analysis.leaf_outputs(run)}`` or one such dict (of seed ``seed``); each
    needs ``probabilities`` (N, H, W) in [0, 1], ``masks`` (N, H, W) {0, 1} and ``regions``
    (N, H, W) bool, the leaf pixels (or ``images`` to find them, :func:`metrics.leaf_region`).
    """
    crit = {
        "(a) lower intensity where uncertain": (
            "on leaf pixels only (no background, no padding): AUROC of the confidence |2p - 1| "
            f"for pixel correctness (p >= 0.5 vs the mask), held-out leaves pooled, - 0.5 - "
            f"{AUROC_MARGIN:g} > 0"),
        "(b) finds spots the labels missed": (
            "needs human review of the largest predicted-disease components outside the mask "
            "(review figure, notebook 05)"),
        "(c) errors (a hand marked, disease missed)": (
            "needs human review of the largest components outside the mask and missed mask "
            "components (review figure, notebook 05)"),
    }
    labels = list(crit)
    items = {s: v for s, v in _leaf_by_seed(leaf, seed).items()
             if "probabilities" in v and "masks" in v}
    ev = []
    if not items:
        parts = [untestable_part(labels[0], crit[labels[0]],
                                 "no leaf outputs with probabilities and masks "
                                 "(analysis.leaf_outputs)")]
    else:
        hists = {s: confidence_histograms(v["probabilities"], v["masks"], _regions(v))
                 for s, v in items.items()}
        auc = {s: float(confidence_auroc(h)) for s, h in hists.items()}
        parts = [auroc_part(labels[0], crit[labels[0]], hists, n_boot)]
        share = [float(h.sum() / np.asarray(items[s]["masks"]).size)
                 for s, h in hists.items()]
        err = [float(h[:, 1].sum() / max(h.sum(), 1)) for h in hists.values()]
        ev.append(f"AUROC(confidence, correct) on leaf pixels {mean_sd(list(auc.values()))}; "
                  f"leaf pixels {mean_sd(share)} of all; error rate on them {mean_sd(err)}")
        st = [items[s].get("stats") or leaf_pixel_stats(items[s]["probabilities"],
                                                         items[s]["masks"]) for s in items]
        ev.append(
            f"pixel Dice {mean_sd([x['dice'] for x in st])}; predicted-disease pixels outside "
            f"the mask {mean_sd([x['outside_fraction'] for x in st])}; mask pixels missed "
            f"{mean_sd([x['missed_fraction'] for x in st])}"
        )
    why_h = ("whether pixels outside the mask are spots the labels missed or errors needs a "
             "person: see the review figure of notebook 05")
    parts += [untestable_part(labels[1], crit[labels[1]], why_h),
              untestable_part(labels[2], crit[labels[2]], why_h)]
    if histories is not None:
        cs = curves(by_seed(histories.get(run)))
        for key in ("heldout_dice", "heldout_iou"):
            v = [c.metric_end[key] for c in cs.values() if key in c.metric_end]
            if v:
                ev.append(f"{run} {key} (last third) {mean_sd(v)}")
    return build_claim(7, parts, "; ".join(ev) or "no leaf data")

