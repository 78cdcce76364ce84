"""Leaf-disease figures: photo, mask, heatmap (Figs. 11-13) and claim 7's review figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pspnet_core.results.figure_base import StudyFigure, _as_rgb_images, _blank, _np

# ---------------------------------------------------------------- figs 11-13


def _mask2d(mask: Any) -> np.ndarray:
    m = _np(mask).astype(np.float32)
    return m.reshape(m.shape[-2:]) if m.ndim > 2 else m


def leaf_image_figure(image: Any, title: str = "Fig. 11  an unseen leaf") -> Figure:
    """fig11: the leaf photo."""
    img = _as_rgb_images(image)[0]
    fig = StudyFigure(figsize=(4.2, 4.4), layout="constrained")
    ax = fig.subplots()
    ax.imshow(img)
    _blank(ax)
    ax.set_title(title, fontsize=10)
    return fig


def leaf_mask_figure(
    image: Any, mask: Any, title: str = "Fig. 12  ground-truth disease mask"
) -> Figure:
    """fig12: the human-labelled disease mask, alone and outlined on the photo."""
    img = _as_rgb_images(image)[0]
    m = _mask2d(mask)
    fig = StudyFigure(figsize=(8.0, 4.4), layout="constrained")
    ax_m, ax_o = fig.subplots(1, 2)
    ax_m.imshow(m, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax_m.set_title("mask (white = disease)", fontsize=9)
    ax_o.imshow(img)
    if m.max() > 0:
        ax_o.contour(m, levels=[0.5], colors=["yellow"], linewidths=1.2)
    ax_o.set_title("mask outline on the leaf", fontsize=9)
    for ax in (ax_m, ax_o):
        _blank(ax)
    fig.suptitle(title, fontsize=10)
    return fig


def leaf_heatmap_figure(
    image: Any,
    probability: Any,
    mask: Any = None,
    threshold: float = 0.5,
    title: str = "Fig. 13  PSPNet's analog one-class output",
) -> Figure:
    """fig13: the analog output as a heatmap (colour bar 0..1) and overlaid on the photo.

    The overlay outlines the ground-truth mask (yellow) and the ``threshold`` contour of the
    prediction (cyan), when given.
    """
    img = _as_rgb_images(image)[0]
    p = _mask2d(probability)
    fig = StudyFigure(figsize=(8.8, 4.4), layout="constrained")
    ax_h, ax_o = fig.subplots(1, 2)
    im = ax_h.imshow(p, cmap="inferno", vmin=0.0, vmax=1.0)
    ax_h.set_title("disease likelihood", fontsize=9)
    ax_o.imshow(img)
    ax_o.imshow(p, cmap="inferno", vmin=0.0, vmax=1.0, alpha=0.55)
    if mask is not None and _mask2d(mask).max() > 0:
        ax_o.contour(_mask2d(mask), levels=[0.5], colors=["yellow"], linewidths=1.0)
    if p.min() < threshold < p.max():
        ax_o.contour(p, levels=[threshold], colors=["cyan"], linewidths=1.0)
    ax_o.set_title(f"overlay (yellow: label, cyan: p = {threshold:g})", fontsize=9)
    for ax in (ax_h, ax_o):
        _blank(ax)
    fig.colorbar(im, ax=[ax_h, ax_o], fraction=0.046, pad=0.02, label="probability")
    fig.suptitle(title, fontsize=10)
    return fig


def leaf_panels(
    image: Any, mask: Any, probability: Any, threshold: float = 0.5
) -> tuple[Figure, Figure, Figure]:
    """(fig11, fig12, fig13) for one held-out leaf: photo, mask, analog heatmap + overlay."""
    return (
        leaf_image_figure(image),
        leaf_mask_figure(image, mask),
        leaf_heatmap_figure(image, probability, mask, threshold),
    )


# ---------------------------------------------------------------- claim 7 review figures


def leaf_reliability_figure(
    table: Any, title: str = "Claim 7(a)  reliability on leaf pixels"
) -> Figure:
    """Error rate of the thresholded output (p >= 0.5 vs the mask) per bin of p, leaf pixels
    only; ``table`` has columns p_lo, p_hi, n, error_rate (``analysis.reliability``), or maps
    a seed to one such table (one line per seed). An output whose intensity marks uncertainty
    errs most in the middle bins."""
    tables = table if isinstance(table, Mapping) else {None: table}
    fig = StudyFigure(figsize=(5.6, 3.6), layout="constrained")
    ax = fig.add_subplot()
    for seed, t in tables.items():
        t = pd.DataFrame(t)
        mid = (t["p_lo"] + t["p_hi"]) / 2
        ax.plot(mid, t["error_rate"], marker="o", ms=3.5,
                label=f"seed {seed}" if seed is not None else None)
    ax.axvline(0.5, color="0.6", lw=0.8, ls="--")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("analog output p (bin centre)")
    ax.set_ylabel("error rate (leaf pixels)")
    if len(tables) > 1 or None not in tables:
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig


def leaf_review_figure(
    components: Sequence[Mapping[str, Any]],
    title: str = "Claim 7(b)/(c)  for review: largest components outside the mask, missed, "
                 "and off the leaf",
) -> Figure:
    """One column per component of ``analysis.leaf_review_components``: the crop of the photo
    (yellow: label outline, cyan: p = 0.5, lime: the leaf region's edge), and the analog
    output; captions give the kind, the leaf and the area. A person judges whether an
    "outside" component is a spot the labels missed or an error, what a "missed" one is, and
    what an "off leaf" one is (a hand marked as disease, paper section 4.4, is an error)."""
    n = max(1, len(components))
    fig = StudyFigure(figsize=(1.7 * n + 0.6, 4.0), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    for j in range(n):
        for ax in axes[:, j]:
            _blank(ax)
        if j >= len(components):
            axes[0, j].axis("off")
            axes[1, j].axis("off")
            continue
        c = components[j]
        p = np.asarray(c["probability"], dtype=float)
        axes[0, j].imshow(c["image"])
        m = np.asarray(c["mask"], dtype=float)
        if 0 < m.max() and m.min() < 1:
            axes[0, j].contour(m, levels=[0.5], colors=["yellow"], linewidths=0.8)
        if p.min() < 0.5 < p.max():
            axes[0, j].contour(p, levels=[0.5], colors=["cyan"], linewidths=0.8)
        r = np.asarray(c.get("region", np.zeros((1, 1))), dtype=float)
        if 0 < r.max() and r.min() < 1:
            axes[0, j].contour(r, levels=[0.5], colors=["lime"], linewidths=0.8)
        axes[1, j].imshow(p, cmap="inferno", vmin=0.0, vmax=1.0)
        kind = str(c["kind"]).replace("_", " ")
        axes[0, j].set_title(f"{kind}\n{c['id']}\n{c['area']} px", fontsize=7)
    axes[0, 0].set_ylabel("photo", fontsize=9)
    axes[1, 0].set_ylabel("output p", fontsize=9)
    if not components:
        axes[0, 0].text(0.5, 0.5, "no component", ha="center", va="center")
    fig.suptitle(title, fontsize=10)
    return fig

