"""Class names and colours of a preset: what figures, legends and the explorer show.

``data.classes`` names the classes (one per id 0..num_classes-1) and ``data.class_colors`` gives
them colours (``"#rrggbb"``). Without them: VOC's 21 names and palette for a 21-class VOC-layout
or generated source; otherwise ``class 0`` .. ``class K-1`` and a categorical palette (tab20;
class 0 black only when named background / void). The ignore label (255) keeps VOC's cream
colour and the name ``ignore``.

    class_names(cfg.data)            -> ["background", "aeroplane", ...]
    class_palette(cfg.data)          -> uint8 (256, 3) for plots.colorize
    names_and_palette(run_cfg)       -> the same for a run (leaf runs: healthy / disease)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pspnet_core.config import DataConfig
from pspnet_core.data.voc import VOC_CLASSES, voc_colormap
from pspnet_core.metrics import IGNORE_INDEX

LEAF_CLASSES: tuple[str, ...] = ("healthy", "disease")
IGNORE_NAME = "ignore"


def class_names(data: DataConfig) -> list[str]:
    """One name per class id of the multi-class task (``data.classes`` or the defaults)."""
    if data.classes:
        return list(data.classes)
    if data.num_classes == len(VOC_CLASSES) and data.voc_source in ("synthetic", "voc2012"):
        return list(VOC_CLASSES)
    return [f"class {i}" for i in range(data.num_classes)]


def _hex(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


# a class 0 of this name is drawn black (VOC's background colour); any other class 0 is not
BACKGROUND_NAMES = frozenset({"background", "void", "unlabeled", "unlabelled", "bg", "other"})


def categorical_colors(n: int) -> np.ndarray:
    """uint8 (n, 3): matplotlib's categorical tab20, then tab20b and tab20c (60 distinct
    colours), repeated beyond that."""
    from matplotlib import colormaps

    table = np.concatenate([np.asarray(colormaps[m].colors)[:, :3]
                            for m in ("tab20", "tab20b", "tab20c")])
    return np.round(table[np.arange(n) % len(table)] * 255).astype(np.uint8)


def _voc_like(data: DataConfig) -> bool:
    """Whether the preset's classes are VOC's 21 (VOC's palette then means something)."""
    return class_names(data) == list(VOC_CLASSES)


def class_palette(data: DataConfig) -> np.ndarray:
    """uint8 (256, 3) over ids 0..K-1: ``data.class_colors`` where given; else VOC's palette
    for VOC's 21 classes, and for any other preset a categorical palette
    (:func:`categorical_colors`), class 0 black only when its name says background or void.
    Id 255 (ignore) stays cream."""
    cmap = voc_colormap().copy()
    if not _voc_like(data):
        names = class_names(data)
        dark = bool(names) and names[0].strip().lower() in BACKGROUND_NAMES
        colors = categorical_colors(data.num_classes)
        for i in range(data.num_classes):
            cmap[i] = (0, 0, 0) if dark and i == 0 else colors[i - 1 if dark else i]
    for i, color in enumerate(data.class_colors):
        cmap[i] = _hex(color)
    return cmap


def names_and_palette(run_cfg: Any) -> tuple[list[str], np.ndarray]:
    """(names, palette) of a run: the preset's classes, or healthy / disease for a leaf run
    (its label maps are 0/1, drawn black / VOC red)."""
    if getattr(run_cfg, "task", "voc") == "leaf":
        return list(LEAF_CLASSES), voc_colormap()
    return class_names(run_cfg.data), class_palette(run_cfg.data)


def hex_color(palette: np.ndarray, index: int) -> str:
    """``"#rrggbb"`` of palette entry ``index`` (255: the ignore colour)."""
    r, g, b = (int(v) for v in np.asarray(palette)[int(index)])
    return f"#{r:02x}{g:02x}{b:02x}"


__all__ = ["BACKGROUND_NAMES", "IGNORE_INDEX", "IGNORE_NAME", "LEAF_CLASSES",
           "categorical_colors", "class_names", "class_palette", "hex_color",
           "names_and_palette"]
