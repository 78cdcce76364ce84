"""Image figures: augmentation grids (Figs. 2-4) and loss galleries (Figs. 6-9)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from pspnet_core.results.figure_base import (
    StudyFigure,
    _as_label_maps,
    _as_rgb_images,
    _blank,
    class_legend_handles,
    colorize,
)

# ---------------------------------------------------------------- figs 02-04


def augmentation_grid(
    images: Any,
    labels: Any,
    colormap: Any = None,
    title: str = "",
    captions: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
) -> Figure:
    """Row (a): augmented inputs; row (b): their label images in the palette (figs 02-04).

    ``images`` uint8 (N,H,W,3) (already denormalized), ``labels`` int (N,H,W) with 255 =
    ignore, drawn in the palette's colour 255. For Mixup pass the argmax label image.
    ``names`` (the preset's class names, ``data.class_names``) adds a legend of the classes
    present in the label row (and the ignore colour where it is drawn).
    """
    imgs = _as_rgb_images(images)
    labs = _as_label_maps(labels)
    if len(imgs) != len(labs):
        raise ValueError(f"{len(imgs)} images but {len(labs)} label maps")
    n = len(imgs)
    fig = StudyFigure(figsize=(1.9 * n + 0.6, 4.3), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    colored = colorize(labs, colormap)
    for i in range(n):
        axes[0, i].imshow(imgs[i])
        axes[1, i].imshow(colored[i], interpolation="nearest")
        _blank(axes[0, i])
        _blank(axes[1, i])
        if captions is not None and i < len(captions):
            axes[0, i].set_title(str(captions[i]), fontsize=8)
    axes[0, 0].set_ylabel("(a) input", fontsize=10)
    axes[1, 0].set_ylabel("(b) label", fontsize=10)
    if names is not None:
        present = np.unique(labs)
        ids = [int(i) for i in present if int(i) != 255]
        handles = class_legend_handles(ids, names, colormap, ignore=bool((present == 255).any()))
        if handles:
            fig.legend(handles=handles, loc="outside lower center", fontsize=8, frameon=False,
                       ncol=min(len(handles), 6))
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


# ---------------------------------------------------------------- figs 06-09


def loss_gallery(
    images: Any,
    labels: Any,
    predictions: Any,
    losses: Sequence[float],
    ids: Sequence[str],
    colormap: Any = None,
    title: str = "",
    ncols: int = 4,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """Tiles of input | label | prediction with the per-image loss in the caption (figs 06-09).

    Lays the N images (16 in the paper) out as ``ncols`` triplets per row. ``predictions``
    are label maps (N,H,W) or logits (N,K,H,W). With ``class_names`` (one per class id) a
    legend under the tiles names the classes shown, in the palette's colours.
    """
    imgs = _as_rgb_images(images)
    labs = _as_label_maps(labels)
    preds = _as_label_maps(predictions)
    n = len(imgs)
    if not (len(labs) == len(preds) == len(losses) == len(ids) == n):
        raise ValueError(
            f"lengths differ: images {n}, labels {len(labs)}, predictions {len(preds)}, "
            f"losses {len(losses)}, ids {len(ids)}"
        )
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    handles = []
    if class_names is not None:
        shown = sorted(({int(v) for v in np.unique(labs)} | {int(v) for v in np.unique(preds)})
                       - {255})
        handles = class_legend_handles(shown, class_names, colormap,
                                       ignore=bool((labs == 255).any()))
    legend_ncol = min(len(handles), 2 * ncols) or 1
    legend_h = 0.25 * -(-len(handles) // legend_ncol) + 0.1 if handles else 0.0
    height = 1.35 * nrows + 0.7 + legend_h
    # three image columns per tile plus a narrow spacer between tiles
    ratios = []
    for c in range(ncols):
        ratios += [1, 1, 1] + ([0.12] if c < ncols - 1 else [])
    fig = StudyFigure(figsize=(3.3 * ncols, height))
    gs = fig.add_gridspec(
        nrows,
        len(ratios),
        width_ratios=ratios,
        wspace=0.03,
        hspace=0.32,
        left=0.01,
        right=0.99,
        top=1 - 0.55 / height,
        bottom=0.01 + legend_h / height,
    )
    lab_rgb = colorize(labs, colormap)
    pred_rgb = colorize(preds, colormap)
    for i in range(nrows * ncols):
        r, c = divmod(i, ncols)
        base = c * 4
        axs = [fig.add_subplot(gs[r, base + k]) for k in range(3)]
        for ax in axs:
            _blank(ax)
        if i >= n:
            for ax in axs:
                ax.axis("off")
            continue
        axs[0].imshow(imgs[i])
        axs[1].imshow(lab_rgb[i], interpolation="nearest")
        axs[2].imshow(pred_rgb[i], interpolation="nearest")
        axs[1].set_title(f"{ids[i]}  loss {float(losses[i]):.3f}", fontsize=7.5, pad=2)
    head = "each tile: input | label | prediction"
    fig.suptitle(f"{title}\n{head}" if title else head, fontsize=10)
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=legend_ncol, fontsize=7.5,
                   frameon=False, bbox_to_anchor=(0.5, 0.0))
    return fig



def gallery_title(base: str, run: str, seed: int, k: int, n: int) -> str:
    """Figs. 6-9: the paper's caption, then the run, the seed and "k of N" ranked images."""
    return f"{base}: {k} of {n} ranked images, run {run}, seed {seed}"
