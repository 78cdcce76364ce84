"""What every figure of the study shares: StudyFigure, save_figure, colours, array conversion."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from pspnet_core.data.voc import voc_colormap
from pspnet_core.store.provenance import png_text, record_figure
from pspnet_core.system.atomic import atomic_path

# the paper's colours per augmentation; the U-Net baseline (unet_none) in a neutral grey
AUGMENT_COLORS: dict[str, str] = {
    "none": "tab:green", "affine": "tab:blue", "mix": "tab:red", "unet": "dimgray",
}
DEFAULT_DPI = 120
DISPLAY_DPI = 72  # inline previews stored in the notebooks (keeps them small in git)



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

