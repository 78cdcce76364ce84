"""Class names and colours of a preset: what figures, legends and the explorer show.

``data.classes`` names the classes (one per id 0..num_classes-1) and ``data.class_colors`` gives
them colours (``"#rrggbb"``). Without them: VOC's 21 names for a 21-class VOC-layout or generated
source, ``class 0`` .. ``class K-1`` otherwise, and the VOC palette (which any class id reads). The
ignore label (255) keeps the palette's cream colour and the name ``ignore``.

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


def class_palette(data: DataConfig) -> np.ndarray:
    """uint8 (256, 3): the VOC palette with ``data.class_colors`` over ids 0..K-1 when given;
    id 255 (ignore) stays cream."""
    cmap = voc_colormap().copy()
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


__all__ = ["IGNORE_INDEX", "IGNORE_NAME", "LEAF_CLASSES", "class_names", "class_palette",
           "hex_color", "names_and_palette"]
