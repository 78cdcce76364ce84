"""Every figure of the study (docs/method.md#figures) as a plain drawing function.

This module is the figures' one entry point (the notebooks call ``plots.<figure>``): it
re-exports ``figure_base`` (StudyFigure, save_figure, colours, legends), ``figures_network``
(Fig. 1), ``figures_images`` (Figs. 2-4, 6-9), ``figures_training`` (Figs. 5/10, seed spread)
and ``figures_leaf`` (Figs. 11-13, claim 7's review figures).

The functions take arrays / DataFrames that the notebooks already computed (no training, no
model calls here) and return a :class:`matplotlib.figure.Figure`. Figures are built with
``matplotlib.figure.Figure`` (subclass :class:`StudyFigure`) directly, not through pyplot, so
nothing accumulates in pyplot's registry, nothing needs closing, and they work under any
backend (Agg in batch runs). In a notebook, end the cell with ``fig`` (or call
``display(fig)``): StudyFigure has ``_repr_png_``, so it shows as an image even when pyplot was
never imported. Save it with :func:`save_figure`.

Arrays may be numpy arrays or CPU/GPU torch tensors (converted with ``.detach().cpu()``).

API (figure numbers as in docs/method.md#figures)::

    save_figure(fig, figures_dir, name, dpi=120, formats=("png", "pdf")) -> list[Path]
        # atomic (temp file + os.replace); name "fig05_learning_curves_sgd" -> .png and .pdf
    colorize(labels, colormap=None) -> uint8 (..., 3)   # default: data.voc.voc_colormap()
    color_for(label) -> str                  # none green, affine blue, mix red, unet grey

    architecture_diagram(trace, param_rows, title=...) -> Figure               # fig01
        trace: [{"part": "stem", "shape": (1, 128, 25, 25)}, ...] (model.trace_shapes)
        param_rows: [{"part": "stem", "total": int, "trainable": int}, ...]
                    (model.parameters_by_part); parts whose name contains "aux" are drawn
                    as the auxiliary branch from layer3.
    augmentation_grid(images, labels, colormap=None, title="", captions=None,
                      names=None) -> Figure
        # figs 02-04: images uint8 (N,H,W,3), labels int (N,H,W); row (a) inputs, (b) labels;
        # names: a legend of the classes present
    learning_curves(histories, colors=None, title="", metric="heldout_miou",
                    log_loss=True, band="minmax") -> Figure
        # figs 05/10: {label: DataFrame(epoch, train_loss, heldout_loss, heldout_miou)} or
        # {label: [DataFrame per seed]}: mean line, band across seeds, thin single seeds
    loss_gallery(images, labels, predictions, losses, ids, colormap=None, title="",
                 ncols=4, class_names=None) -> Figure
        # figs 06-09: tiles of input | label | prediction, caption "id  loss"; with
        # class_names a legend of the classes shown (names and colours)
    class_legend_handles(ids, names, colormap=None, ignore=False) -> [Patch]
        # predictions: int label maps (N,H,W) or logits (N,K,H,W) (argmax taken)
    leaf_panels(image, mask, probability, threshold=0.5) -> (fig11, fig12, fig13)
    leaf_image_figure(image) / leaf_mask_figure(image, mask) /
    leaf_heatmap_figure(image, probability, mask=None, threshold=0.5)
        # image uint8 (H,W,3), mask (H,W) {0,1}, probability (H,W) in [0,1]

Typical notebook cell::

    fig = plots.learning_curves({"none": h1, "affine": h2, "mix": h3}, title="SGD")
    plots.save_figure(fig, fig_dir, "fig05_learning_curves_sgd")
    fig
"""

from __future__ import annotations

from pspnet_core.results.figure_base import (
    AUGMENT_COLORS,
    DEFAULT_DPI,
    DISPLAY_DPI,
    StudyFigure,
    class_legend_handles,
    color_for,
    colorize,
    save_figure,
)
from pspnet_core.results.figures_images import (
    augmentation_grid,
    gallery_title,
    loss_gallery,
)
from pspnet_core.results.figures_leaf import (
    leaf_heatmap_figure,
    leaf_image_figure,
    leaf_mask_figure,
    leaf_panels,
    leaf_reliability_figure,
    leaf_review_figure,
)
from pspnet_core.results.figures_network import (
    architecture_diagram,
)
from pspnet_core.results.figures_training import (
    BANDS,
    learning_curves,
    seed_spread,
)

__all__ = [
    "AUGMENT_COLORS",
    "BANDS",
    "DEFAULT_DPI",
    "DISPLAY_DPI",
    "StudyFigure",
    "architecture_diagram",
    "augmentation_grid",
    "class_legend_handles",
    "color_for",
    "colorize",
    "gallery_title",
    "leaf_heatmap_figure",
    "leaf_image_figure",
    "leaf_mask_figure",
    "leaf_panels",
    "leaf_reliability_figure",
    "leaf_review_figure",
    "learning_curves",
    "loss_gallery",
    "save_figure",
    "seed_spread",
]
