"""Every figure of the study (docs/method.md#figures) as a plain drawing function.

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

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch
from matplotlib.ticker import MaxNLocator
from scipy import stats

from pspnet_core.data.voc import voc_colormap
from pspnet_core.store.provenance import png_text, record_figure
from pspnet_core.system.atomic import atomic_path

# the paper's colours per augmentation; the U-Net baseline (unet_none) in a neutral grey
AUGMENT_COLORS: dict[str, str] = {
    "none": "tab:green", "affine": "tab:blue", "mix": "tab:red", "unet": "dimgray",
}
DEFAULT_DPI = 120
DISPLAY_DPI = 72  # inline previews stored in the notebooks (keeps them small in git)


# ---------------------------------------------------------------- helpers


class StudyFigure(Figure):
    """A Figure that shows itself in Jupyter (``_repr_png_``) without importing pyplot.

    Plain ``Figure`` objects only display as ``<Figure ...>`` text in a kernel unless pyplot's
    inline backend registered its formatter; this keeps ``fig`` as a cell's last line working.
    """

    def _repr_png_(self) -> bytes:
        # notebooks show a lighter preview; the saved PNG/PDF keep DEFAULT_DPI
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=DISPLAY_DPI, bbox_inches="tight")
        return buf.getvalue()


def _np(x: Any) -> np.ndarray:
    """numpy view of an array-like or a torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if str(x.dtype) in ("torch.bfloat16", "torch.float16"):
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def colorize(labels: Any, colormap: Any = None) -> np.ndarray:
    """Label map(s) int (..., H, W) -> uint8 RGB (..., H, W, 3) through ``colormap`` (256, 3).

    Values outside 0..255 are clipped (so -1 shows as class 0); 255 uses the palette's 255
    colour (VOC: (224, 224, 192)).
    """
    cmap = voc_colormap() if colormap is None else _np(colormap).astype(np.uint8)
    if cmap.shape != (256, 3):
        raise ValueError(f"colormap must have shape (256, 3), got {cmap.shape}")
    lab = _np(labels)
    lab = np.clip(np.rint(lab) if lab.dtype.kind == "f" else lab, 0, 255).astype(np.intp)
    return cmap[lab]


def _as_rgb_images(images: Any) -> np.ndarray:
    """(N,H,W,3) uint8; accepts (N,3,H,W) too, and floats in [0,1]."""
    arr = _np(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise ValueError(f"images must be (N, H, W, 3), got shape {arr.shape}")
    if arr.shape[-1] != 3 and arr.shape[1] == 3:
        arr = arr.transpose(0, 2, 3, 1)
    if arr.dtype != np.uint8:
        if arr.dtype.kind == "f" and arr.max(initial=0) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return arr


def _as_label_maps(x: Any) -> np.ndarray:
    """(N,H,W) ints; (N,K,H,W) logits/probabilities are arg-maxed over K."""
    arr = _np(x)
    if arr.ndim == 4:
        arr = arr.argmax(axis=1)
    if arr.ndim == 2:
        arr = arr[None]
    return arr


def _blank(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def class_legend_handles(ids: Sequence[int], names: Sequence[str], colormap: Any = None,
                         ignore: bool = False) -> list[Patch]:
    """Legend patches "<id> <name>" in the palette's colours for class ids ``ids`` (plus the
    ignore colour, palette entry 255, when ``ignore``)."""
    cmap = voc_colormap() if colormap is None else _np(colormap).astype(np.uint8)
    handles = [Patch(facecolor=cmap[int(i)] / 255.0, edgecolor="0.3", linewidth=0.5,
                     label=f"{int(i)} {names[int(i)]}" if int(i) < len(names) else str(int(i)))
               for i in ids]
    if ignore:
        handles.append(Patch(facecolor=cmap[255] / 255.0, edgecolor="0.3", linewidth=0.5,
                             label="ignore"))
    return handles


def color_for(label: str) -> str:
    """Colour of a run by its augmentation: "none" green, "affine" blue, "mix" red; any label
    containing "unet" (the U-Net baseline) grey; others tab:gray."""
    low = label.lower()
    if "unet" in low:
        return AUGMENT_COLORS["unet"]
    for key in ("none", "affine", "mix"):
        if low.endswith(key):
            return AUGMENT_COLORS[key]
    return "tab:gray"


def save_figure(
    fig: Figure,
    figures_dir: str | Path,
    name: str,
    dpi: int = DEFAULT_DPI,
    formats: Sequence[str] = ("png", "pdf"),
    provenance: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write ``fig`` as ``figures_dir/name.png`` and ``.pdf``, each atomically.

    Each file is written to a temporary file in the same folder and moved into place with
    ``os.replace``, so a reader never sees half a figure. ``provenance``
    (:func:`pspnet_core.store.provenance.figure_record`) goes into the PNG as a text chunk and into
    ``figures_dir/provenance.json``. Returns the written paths.
    """
    out_dir = Path(figures_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = name
    for fmt in formats:
        if stem.endswith("." + fmt):
            stem = stem[: -len(fmt) - 1]
    written = []
    for fmt in formats:
        target = out_dir / f"{stem}.{fmt}"
        with atomic_path(target) as tmp:
            # no creation date in PDFs: identical figures give identical files
            metadata = {"CreationDate": None} if fmt == "pdf" else None
            if fmt == "png" and provenance is not None:
                metadata = png_text(provenance)
            fig.savefig(tmp, format=fmt, dpi=dpi, metadata=metadata)
        written.append(target)
    if provenance is not None:
        record_figure(out_dir, stem, provenance)
    return written


def _human(n: int | float) -> str:
    n = float(n)
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{int(n)}"


def _shape_text(shape: Any) -> str:
    dims = [int(d) for d in (shape if shape is not None else [])]
    if len(dims) == 4:  # (B, C, H, W): drop the batch
        dims = dims[1:]
    return "\u00d7".join(str(d) for d in dims) if dims else "?"


# ---------------------------------------------------------------- fig01


def _trainable_text(row: Mapping[str, Any]) -> str:
    """"all trainable", "frozen" or "<n> trainable" for a part's parameter row."""
    total, trainable = int(row["total"]), int(row["trainable"])
    if total and trainable == total:
        return "all trainable"
    return "frozen" if total and not trainable else f"{_human(trainable)} trainable"


def architecture_diagram(
    trace: Sequence[Mapping[str, Any]],
    param_rows: Sequence[Mapping[str, Any]],
    title: str = "Fig. 1  PSPNet: stem, dilated ResNet50, pyramid pooling, decoder, aux branch",
    setting: str = "",
) -> Figure:
    """Block diagram of the measured structure (fig01).

    ``trace`` (from ``model.trace_shapes``) gives the drawn boxes, in order, each annotated
    with its output shape (C x H x W; the batch dimension is dropped). ``param_rows`` (from
    ``model.parameters_by_part``) adds "total / trainable" parameter counts to the box of the
    same part ("all trainable", "frozen" or the trainable count): pass the rows of the model
    the preset trains, so a whole-network preset is not drawn with the paper's frozen
    backbone; ``setting`` (e.g. "freeze_backbone: false") is said in the subtitle. Parts whose
    name contains "aux" form the auxiliary branch, drawn below and fed from ``layer3``
    (training only). Parameter rows without a box are listed underneath.
    """
    params = {str(r["part"]): r for r in param_rows}
    main = [t for t in trace if "aux" not in str(t["part"]).lower()]
    aux = [t for t in trace if "aux" in str(t["part"]).lower()]
    n = max(len(main), 1)
    box_w, gap = 1.0, 0.45
    width = n * box_w + (n - 1) * gap
    fig = StudyFigure(figsize=(max(8.0, 1.75 * n), 4.6 if aux else 3.2))
    ax = fig.add_axes((0.01, 0.02, 0.98, 0.84))
    ax.set_xlim(-0.2, width + 0.2)
    ax.set_ylim(-2.3 if aux else -0.9, 1.35)
    ax.axis("off")

    def box(x: float, y: float, item: Mapping[str, Any], color: str) -> None:
        part = str(item["part"])
        ax.add_patch(
            FancyBboxPatch(
                (x, y),
                box_w,
                1.0,
                boxstyle="round,pad=0.03,rounding_size=0.08",
                facecolor=color,
                edgecolor="black",
                linewidth=1.0,
            )
        )
        ax.text(
            x + box_w / 2, y + 0.78, part, ha="center", va="center", fontsize=10, fontweight="bold"
        )
        ax.text(
            x + box_w / 2,
            y + 0.5,
            _shape_text(item.get("shape")),
            ha="center",
            va="center",
            fontsize=8.5,
            family="monospace",
        )
        row = params.get(part)
        if row is not None:
            ax.text(
                x + box_w / 2,
                y + 0.2,
                f"{_human(row['total'])} params\n{_trainable_text(row)}",
                ha="center",
                va="center",
                fontsize=7.5,
                color="0.25",
            )
        elif part in ("main", "aux", "output"):
            ax.text(
                x + box_w / 2,
                y + 0.2,
                "bilinear upsample\nto input size",
                ha="center",
                va="center",
                fontsize=7.5,
                color="0.25",
            )

    def arrow(p: tuple[float, float], q: tuple[float, float], dashed: bool = False) -> None:
        ax.add_patch(
            FancyArrowPatch(
                p,
                q,
                arrowstyle="-|>",
                mutation_scale=12,
                linewidth=1.2,
                linestyle="--" if dashed else "-",
                color="black",
            )
        )

    palette = {
        "input": "#eeeeee",
        "stem": "#fde0c5",
        "ppm": "#c8e6c9",
        "head": "#f8bbd0",
        "main": "#f8bbd0",
        "output": "#eeeeee",
    }
    xs = {}
    for i, item in enumerate(main):
        part = str(item["part"])
        x = i * (box_w + gap)
        xs[part] = x
        color = "#bbdefb" if part.startswith("layer") else palette.get(part, "#e1bee7")
        box(x, 0.0, item, color)
        if i:
            arrow((x - gap, 0.5), (x, 0.5))
    if aux:
        src = "layer3" if "layer3" in xs else str(main[len(main) // 2]["part"]) if main else None
        x0 = xs.get(src, 0.0) if src else 0.0
        for j, item in enumerate(aux):
            x = x0 + j * (box_w + gap)
            box(x, -1.9, item, "#fff9c4")
            if j:
                arrow((x - gap, -1.4), (x, -1.4))
        arrow((x0 + box_w / 2, -0.05), (x0 + box_w / 2, -0.88), dashed=True)
        ax.text(
            x0 + box_w / 2 + 0.05,
            -0.5,
            f"aux branch from {src} (training only)",
            fontsize=8,
            va="center",
            style="italic",
        )
    drawn = {str(t["part"]) for t in trace}
    extra = [r for p, r in params.items() if p not in drawn]
    total = sum(int(r["total"]) for r in param_rows)
    trainable = sum(int(r["trainable"]) for r in param_rows)
    subtitle = (
        f"shapes measured by a forward pass (C\u00d7H\u00d7W); parameters: "
        f"{total:,} total, {trainable:,} trainable" + (f" ({setting})" if setting else "")
    )
    if extra:
        subtitle += "; also " + ", ".join(
            f"{r['part']} {_human(r['total'])}/{_human(r['trainable'])}" for r in extra
        )
    fig.suptitle(title, fontsize=11, y=0.98)
    fig.text(0.5, 0.885, subtitle, ha="center", fontsize=8.5, color="0.3")
    return fig


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


# ---------------------------------------------------------------- figs 05 / 10


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
        n_txt = f" ({len(frames)} seeds)" if len(frames) > 1 else ""
        panels = [(ax_loss, f"{s}_loss", style, marker, f"{label} {name}{n_txt}")
                  for s, style, marker, name in (("train", "-", "o", "train"),
                                                 ("heldout", "--", "s", "held-out"))
                  if s in splits]
        if all(metric in f for f in frames):
            panels.append((ax_metric, metric, "-", "o", f"{label}{n_txt}"))
        for ax, column, style, marker, name in panels:
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
    parts = ["line = mean over seeds"] + ([f"band = {BANDS[band]}"] if band in BANDS else []) + (
        ["thin lines = single seeds"] if seed_lines else [])
    spread = ", ".join(parts) if max_seeds > 1 else ""
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss (log scale)" if log_loss else "loss")
    if log_loss:
        ax_loss.set_yscale("log")
    # train_loss: the paper's running mean over augmented batches (train_clean_loss is not drawn)
    ax_loss.set_title("loss: train solid (running mean over the epoch's augmented batches, as "
                      "the paper plots), held-out dashed", fontsize=9)
    ax_loss.grid(alpha=0.3)
    if ax_loss.lines:
        ax_loss.legend(fontsize=8, ncol=2)
    nice = {
        "heldout_miou": "held-out mIoU",
        "heldout_dice": "held-out Dice",
        "heldout_iou": "held-out IoU",
        "heldout_pixel_acc": "held-out pixel accuracy",
    }
    ax_metric.set_xlabel("epoch")
    for ax in (ax_loss, ax_metric):  # epochs are whole numbers: no 1.25, 2.5 ticks
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_metric.set_ylabel(nice.get(metric, metric))
    ax_metric.set_title(f"{nice.get(metric, metric)} per epoch", fontsize=10)
    ax_metric.grid(alpha=0.3)
    if ax_metric.lines:
        ax_metric.legend(fontsize=8)
    else:
        ax_metric.text(0.5, 0.5, f"no {metric} column", ha="center", transform=ax_metric.transAxes)
    if title or spread:
        fig.suptitle("\n".join(t for t in (title, spread) if t), fontsize=11 if title else 9)
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


def gallery_title(base: str, run: str, seed: int, k: int, n: int) -> str:
    """Figs. 6-9: the paper's caption, then the run, the seed and "k of N" ranked images."""
    return f"{base}: {k} of {n} ranked images, run {run}, seed {seed}"
