"""Kaggle "Leaf disease segmentation dataset" layout (docs/method.md#data):
``images/<stem>.jpg`` with ``masks/<stem>.png``; a mask pixel > 0 is disease.

Masks come as palette 0/1 (original set), grayscale 0/38 (augmented copy) or 0/255; the target
is the float map (mask > 0). There is no ignore label: padding and rotation borders are 0.

The mask rule (docs/method.md#data), checked for every mask when it is read:

* accepted encodings: background 0 and disease 1, 38 or 255 (one of them per mask; a mask may
  hold only one of the two values), stored as a palette PNG (its indices count), a grayscale PNG
  (8 or 16 bit) or a 1-bit PNG;
* an RGB(A) mask is reduced to grayscale only if its three channels are equal everywhere, then
  the same rule applies; a coloured RGB mask is an error;
* a JPEG mask is an error (compression invents values), whatever its extension;
* anything else, e.g. a near-black (2, 2, 2) background or values 0/128, is a :class:`DataError`
  naming the file and the values found (never silently "everything > 0 is disease").

Large photos (the Kaggle set has JPEGs up to 2160x1440): as in the VOC and folder readers, a
JPEG much larger than the network input is decoded reduced (``loading.open_rgb``: PIL's
``draft``, libjpeg's DCT scaling by 1/2, 1/4 or 1/8, never below ``decode_size`` on either
side; ``loading.ReadSpec`` sets it to twice the input size). The mask is checked at its stored
size against the stored image size, then resized to the decoded size (nearest:
``loading.fit_mask``). Images smaller than twice ``decode_size`` (the synthetic leaf set of
every preset) decode exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pspnet_core.config import DataConfig
from pspnet_core.data.loading import (
    DataError,
    DatasetNotFoundError,
    Pair,
    PairedDataset,
    ReadSpec,
    check_pair,
    fit_mask,
    open_rgb,
    pairs_by_stem,
    read_mask,
)

DISEASE_VALUES = (1, 38, 255)  # the accepted foreground encodings (0 is background)
IMAGE_EXTS = (".jpg", ".jpeg", ".png")  # any case: .JPG, .JPEG, .PNG too
MASK_EXTS = (".png",)

LEAF_LAYOUT = """\
  <root>/
      images/<stem>.jpg     (.jpeg, .JPG and .png accepted)
      masks/<stem>.png      palette 0/1 or grayscale 0/38 or 0/255; > 0 = disease"""


def leaf_target(mask: np.ndarray, path: str | Path) -> np.ndarray:
    """The module's mask rule: values {0} plus at most one of 1, 38, 255 -> uint8 0/1."""
    if mask.dtype == np.uint8:  # what read_mask gives: a histogram is ~3x faster than unique
        values = np.flatnonzero(np.bincount(mask.ravel(), minlength=256))
    else:
        values = np.unique(mask)
    disease = [int(v) for v in values if v != 0]
    if len(disease) > 1 or (disease and disease[0] not in DISEASE_VALUES):
        shown = [int(v) for v in values[:8]] + (["..."] if len(values) > 8 else [])
        raise DataError(
            f"leaf mask {path}: values {shown} found; a leaf mask holds 0 (background) and one "
            "disease value, 1, 38 or 255 (palette or grayscale; see pspnet_core/data/leaf.py). "
            "Re-export the mask with those values."
        )
    return (mask > 0).astype(np.uint8)


def leaf_pairs(root: str | Path) -> list[Pair]:
    """All (stem, image, mask) pairs under ``root``; unpaired files are an error naming them."""
    root = Path(root)
    if root.is_symlink():  # a generated tree: read the generation the link points at now
        root = root.resolve()
    img_dir, mask_dir = root / "images", root / "masks"
    for d in (img_dir, mask_dir):
        if not d.is_dir():
            raise DatasetNotFoundError(
                f"leaf dataset not found: expected the folder {d}.\nThe reader wants this "
                f"layout:\n{LEAF_LAYOUT.replace('<root>', str(root))}\nTo get it: download the "
                "Kaggle 'Leaf disease segmentation dataset' (kaggle datasets download -d "
                "fakhrealam9537/leaf-disease-segmentation-dataset), unzip it and move its "
                f"data/data/images and data/data/masks folders to {root} (or point "
                "data.root + data.leaf_root at the folder that holds them); the embedded "
                "default (data.leaf_source: synthetic) needs no download."
            )
    return pairs_by_stem(img_dir, mask_dir, IMAGE_EXTS, MASK_EXTS, "leaf ")


def split_fraction(n: int, heldout_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of ``n`` items: round(n * fraction) held out (at least 1, never all)."""
    n_held = max(1, round(n * heldout_fraction))
    if n - n_held < 1:
        raise DataError(
            f"the leaf dataset has {n} images: too few to hold out {n_held} and train on the rest"
        )
    order = np.random.default_rng(seed).permutation(n)
    return sorted(order[n_held:].tolist()), sorted(order[:n_held].tolist())


class LeafDataset(PairedDataset):
    """Leaf items: ``(image float (3, H, W), float (H, W) in {0, 1})``."""

    def __init__(
        self,
        pairs,
        transform: Callable[..., dict[str, Any]] | None,
        decode_size: int | None = None,
    ) -> None:
        super().__init__(pairs, transform, "binary", 1, None, decode_size)

    def load_raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Checked ``(RGB uint8 (H, W, 3), mask uint8 0/1 (H, W))``: the mask rule above; a
        large JPEG comes decoded reduced (>= ``decode_size`` a side) with its mask resized."""
        pair = self.pairs[index]
        image, (w, h) = open_rgb(pair.image, self.decode_size)
        mask = leaf_target(read_mask(pair.mask), pair.mask)
        check_pair(np.empty((h, w), np.uint8), mask, pair.image, pair.mask)  # stored sizes
        return image, fit_mask(mask, image)  # a JPEG decoded reduced: its labels follow


def leaf_datasets(
    root: str | Path, data: DataConfig, read: ReadSpec
) -> tuple[LeafDataset, LeafDataset]:
    """The seeded train / held-out split of the pairs under ``root`` (docs/method.md#data: a
    ``data.leaf_heldout_fraction`` of them held out, drawn with ``data.split_seed``); items read
    as ``read`` says (JPEGs at least twice ``read.decode_size`` on both sides decode reduced;
    None decodes everything whole)."""
    pairs = leaf_pairs(root)
    tr, ho = split_fraction(len(pairs), data.leaf_heldout_fraction, data.split_seed)
    return (
        LeafDataset([pairs[i] for i in tr], read.train_transform, read.decode_size),
        LeafDataset([pairs[i] for i in ho], read.heldout_transform, read.decode_size),
    )
