"""The learning curves of the runs, mean and spread over seeds (Figs. 5 and 10)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy import stats

from pspnet_core.results.figure_base import StudyFigure, color_for

BANDS = {"minmax": "min-max over seeds", "t95": "95 % t-interval of the mean over seeds"}


def _seed_frames(hist: Any) -> list[Any]:
    """A history or a sequence / mapping of per-seed histories -> list of non-empty frames."""
    if isinstance(hist, Mapping):
        hist = list(hist.values())
    frames = list(hist) if isinstance(hist, (list, tuple)) else [hist]
    return [h for h in frames if h is not None and len(h)]


def seed_spread(frames: Sequence[Any], column: str, band: str = "minmax"):
    """(epochs, mean, lo, hi, n) of ``column`` over per-seed histories, epoch by epoch.

    ``band``: "minmax" (lowest and highest seed) or "t95" (mean +- t(0.975, n-1) sd / sqrt(n));
    lo = hi = mean where only one seed has that epoch.
    """
    if band not in BANDS:
        raise ValueError(f"band must be one of {', '.join(BANDS)}, got {band!r}")
    table = pd.concat(
        [pd.Series(np.asarray(f[column], dtype=float), index=np.asarray(f["epoch"]))
         for f in frames if column in f], axis=1,
    ).sort_index()
    mean = table.mean(axis=1).to_numpy()
    n = table.notna().sum(axis=1).to_numpy()
    if band == "minmax":
        lo, hi = table.min(axis=1).to_numpy(), table.max(axis=1).to_numpy()
    else:
        sd = table.std(axis=1, ddof=1).fillna(0.0).to_numpy()
        t = np.where(n > 1, stats.t.ppf(0.975, np.maximum(n - 1, 1)), 0.0)
        half = t * sd / np.sqrt(np.maximum(n, 1))
        lo, hi = mean - half, mean + half
    return table.index.to_numpy(), mean, lo, hi, n


def _clip_band(column: str, lo: Any, hi: Any) -> tuple[np.ndarray, np.ndarray]:
    """A seed band kept within the column's range: a loss is never below 0, a ratio (mIoU,
    Dice, IoU, accuracy) within [0, 1] (a t-interval of few seeds can reach past both)."""
    top = np.inf if column.endswith("loss") else 1.0
    return np.clip(np.asarray(lo, dtype=float), 0.0, top), np.clip(np.asarray(hi, dtype=float),
                                                                   0.0, top)


def _draw_seed_curves(ax: Any, frames: Sequence[Any], column: str, style: str, marker: str,
                      name: str, c: str, band: str, seed_lines: bool) -> None:
    """One curve of ``column``: the mean over seeds, with several seeds the band and the
    single seeds (thin, no legend entry)."""
    ep, mean, lo, hi, _ = seed_spread(frames, column,
                                      "minmax" if band == "none" else band)
    if len(frames) > 1:
        for f in frames if seed_lines else ():  # single seeds: thin, no legend entry
            ax.plot(f["epoch"], f[column], color=c, linestyle=style, linewidth=0.6,
                    alpha=0.45, label="_nolegend_")
        if band != "none":
            lo, hi = _clip_band(column, lo, hi)
            ax.fill_between(ep, lo, hi, color=c, alpha=0.15, linewidth=0,
                            label="_nolegend_")
    ax.plot(ep, mean, color=c, linestyle=style, marker=marker, markersize=3,
            linewidth=1.8 if len(frames) > 1 else 1.5, label=name)


def _draw_run(ax_loss: Any, ax_metric: Any, label: str, frames: Sequence[Any], c: str,
              metric: str, band: str, splits: Sequence[str], seed_lines: bool) -> None:
    """A run's loss curves (train solid, held-out dashed) and its ``metric`` curve."""
    n_txt = f" ({len(frames)} seeds)" if len(frames) > 1 else ""
    panels = [(ax_loss, f"{s}_loss", style, marker, f"{label} {name}{n_txt}")
              for s, style, marker, name in (("train", "-", "o", "train"),
                                             ("heldout", "--", "s", "held-out"))
              if s in splits]
    if all(metric in f for f in frames):
        panels.append((ax_metric, metric, "-", "o", f"{label}{n_txt}"))
    for ax, column, style, marker, name in panels:
        _draw_seed_curves(ax, frames, column, style, marker, name, c, band, seed_lines)


def _style_loss_axis(ax_loss: Any, log_loss: bool) -> None:
    """Labels, scale, title, grid and legend of the loss panel."""
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss (log scale)" if log_loss else "loss")
    if log_loss:
        ax_loss.set_yscale("log")
    # train_loss: the paper's running mean over augmented batches (train_clean_loss is not drawn)
    ax_loss.set_title("loss: train solid, held-out dashed\ntrain = running mean over the "
                      "epoch's augmented batches (as the paper plots)", fontsize=9)
    ax_loss.grid(alpha=0.3)
    if ax_loss.lines:
        ax_loss.legend(fontsize=8, ncol=2)


METRIC_NAMES = {
    "heldout_miou": "held-out mIoU",
    "heldout_dice": "held-out Dice",
    "heldout_iou": "held-out IoU",
    "heldout_pixel_acc": "held-out pixel accuracy",
}


def _style_metric_axis(ax_loss: Any, ax_metric: Any, metric: str) -> None:
    """Whole-epoch ticks on both panels; labels, title, grid and legend of the metric panel
    (or "no <metric> column")."""
    ax_metric.set_xlabel("epoch")
    for ax in (ax_loss, ax_metric):  # epochs are whole numbers: no 1.25, 2.5 ticks
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_metric.set_ylabel(METRIC_NAMES.get(metric, metric))
    ax_metric.set_title(f"{METRIC_NAMES.get(metric, metric)} per epoch", fontsize=10)
    ax_metric.grid(alpha=0.3)
    if ax_metric.lines:
        ax_metric.legend(fontsize=8)
    else:
        ax_metric.text(0.5, 0.5, f"no {metric} column", ha="center", transform=ax_metric.transAxes)


def learning_curves(
    histories: Mapping[str, Any],
    colors: Mapping[str, str] | None = None,
    title: str = "",
    metric: str = "heldout_miou",
    log_loss: bool = True,
    band: str = "minmax",
    splits: Sequence[str] = ("train", "heldout"),
    seed_lines: bool = True,
) -> Figure:
    """Left: train (solid) and held-out (dashed) loss per epoch; right: held-out ``metric``.

    ``histories`` maps a label ("none", "affine", "mix", "unet" or a run name) to one history
    DataFrame (columns epoch, train_loss, heldout_loss and ``metric``) or to the histories of
    several seeds (a list, or a dict seed -> DataFrame). With several seeds each curve is the
    mean per epoch (thick line), a shaded band across the seeds (``band``: "minmax" = lowest to
    highest seed, the default; "t95" = 95 % t-interval of the mean) and every single seed as a
    thin line. Colours come from ``colors`` or :func:`color_for` (none green, affine blue, mix
    red, unet grey); train solid, held-out dashed as in the paper's Figs. 5 and 10.

    ``log_loss`` draws the loss axis on a log scale: early held-out losses of a briefly trained
    network can be orders of magnitude above the rest and would flatten the curves. ``splits``
    chooses the loss curves drawn ("train", "heldout"); ``band="none"`` leaves the band out and
    ``seed_lines=False`` the single seeds (the explorer's toggles).
    """
    fig = StudyFigure(figsize=(11.0, 4.2), layout="constrained")
    ax_loss, ax_metric = fig.subplots(1, 2)
    max_seeds = 1
    for label, hist in histories.items():
        c = (colors or {}).get(label) or color_for(label)
        frames = _seed_frames(hist)
        if not frames:
            continue
        max_seeds = max(max_seeds, len(frames))
        _draw_run(ax_loss, ax_metric, label, frames, c, metric, band, splits, seed_lines)
    parts = ["line = mean over seeds"] + ([f"band = {BANDS[band]}"] if band in BANDS else []) + (
        ["thin lines = single seeds"] if seed_lines else [])
    spread = ", ".join(parts) if max_seeds > 1 else ""
    _style_loss_axis(ax_loss, log_loss)
    _style_metric_axis(ax_loss, ax_metric, metric)
    if title or spread:
        fig.suptitle("\n".join(t for t in (title, spread) if t), fontsize=11 if title else 9)
    return fig
