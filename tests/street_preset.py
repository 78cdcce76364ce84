"""A street-scene set in the layout such sets ship in (CamVid-like: 11 classes, void 11,
``train/`` + ``trainannot/`` and a separate ``val/`` + ``valannot/``), generated, for the
own-data tests (test_explore.py, test_own_data.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

STREET = ["sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car",
          "pedestrian", "bicyclist"]
STREET_COLORS = ["#808080", "#800000", "#c0c0c0", "#804080", "#3c28de", "#808000",
                 "#c08080", "#404080", "#400080", "#404000", "#0080c0"]


def street_folders(root: Path, n_train: int = 8, n_val: int = 4, size: int = 64) -> Path:
    """A CamVid-like layout: train/ + trainannot/ and val/ + valannot/, PNG images, grayscale
    masks of classes 0..10 with void 11 in the top rows; val stems differ from train stems."""
    rng = np.random.default_rng(0)
    for split, n, prefix in (("train", n_train, "0001TP"), ("val", n_val, "0016E5")):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(n):
            img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            mask = np.zeros((size, size), np.uint8)
            for k in range(11):  # stripes of every class, so each is present
                mask[:, k * size // 11:(k + 1) * size // 11] = k
                img[:, k * size // 11:(k + 1) * size // 11] = (k * 23 % 255, k * 51 % 255, 90)
            mask[:3] = 11  # void
            Image.fromarray(img).save(root / split / f"{prefix}_{i:04d}.png")
            Image.fromarray(mask, mode="L").save(root / f"{split}annot" / f"{prefix}_{i:04d}.png")
    return root


def street_overrides(root: Path, **extra) -> dict:
    return {"data.voc_source": "folder", "data.voc_root": str(root),
            "data.folder_images": "train", "data.folder_masks": "trainannot",
            "data.heldout_images": "val", "data.heldout_masks": "valannot",
            "data.num_classes": 11, "data.ignore_index": 11, "data.n_train": 6,
            "data.n_heldout": 3, "data.classes": STREET, "data.class_colors": STREET_COLORS,
            **extra}
