"""Your own multi-class data as a plain folder (``data.voc_source: folder``)::

    <root>/images/<stem>.jpg      RGB photos (.jpg, .jpeg or .png, any case)
    <root>/masks/<stem>.png       class indices: grayscale ("L") or palette ("P") PNG,
                                  0..num_classes-1, and ignore_index for unlabelled pixels

``<root>`` is ``data.root / data.voc_root``; the two subfolder names are ``data.folder_images``
and ``data.folder_masks``. Pairs are matched by file stem. The seeded ``n_train`` / ``n_heldout``
draw is the VOC path's (:func:`pspnet_core.data.voc.split_ids`). A dataset with its own validation
split names it with ``data.heldout_images`` / ``data.heldout_masks`` (two more subfolders of
``<root>``): the held-out pairs are then drawn from there, the training pairs from the first pair.

Ignore label: the loss and the metrics ignore :data:`pspnet_core.metrics.IGNORE_INDEX` (255).
A folder whose masks mark unlabelled pixels with another value (a common street-scene set:
11 classes, void = 11) sets ``data.ignore_index: 11``; the reader maps that value to 255 when
it reads a mask, so nothing downstream needs to know. Any other value >= num_classes is an
error that names the mask.

Large photos: a JPEG much larger than the network input is decoded at a reduced size
(``loading.open_rgb`` with PIL's ``draft``: libjpeg's DCT scaling by 1/2, 1/4 or 1/8, never
below ``decode_size`` on either side; :class:`~pspnet_core.data.loading.ReadSpec` sets it to
twice the input size, so the affine preset's upscaling keeps its detail). Its mask is then
resized to the decoded size (nearest: ``loading.fit_mask``). docs/method.md#data states the
paper's data section (the seeded 1400 / 500 split) and how this source follows it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    check_labels,
    check_pair,
    fit_mask,
    open_rgb,
    pairs_by_stem,
    read_mask,
)
from pspnet_core.data.voc import split_ids
from pspnet_core.metrics import IGNORE_INDEX

IMAGE_EXTS = (".jpg", ".jpeg", ".png")  # any case
MASK_EXTS = (".png",)  # lossless only: a JPEG mask's labels would be invented by its noise

FOLDER_LAYOUT = """\
  <root>/
      {images}/<stem>.jpg     (.jpeg, .png accepted; any case)
      {masks}/<stem>.png      grayscale or palette PNG: class index 0..K-1, ignore_index"""


def folder_pairs(root: str | Path, images: str = "images", masks: str = "masks") -> list[Pair]:
    """All (stem, image, mask) pairs under ``root``, sorted by stem; a missing folder or an
    unpaired file is an error that names it."""
    root = Path(root)
    img_dir, mask_dir = root / images, root / masks
    for d in (img_dir, mask_dir):
        if not d.is_dir():
            layout = FOLDER_LAYOUT.format(images=images, masks=masks).replace("<root>", str(root))
            raise DatasetNotFoundError(
                f"folder dataset not found: expected the folder {d}.\nThe reader "
                f"(data.voc_source: folder) wants this layout:\n{layout}\n"
                "Point data.root + data.voc_root at the folder that holds both subfolders "
                "(data.folder_images / data.folder_masks name them)."
            )
    return pairs_by_stem(img_dir, mask_dir, IMAGE_EXTS, MASK_EXTS)


class FolderDataset(PairedDataset):
    """Items ``(image float (3, H, W), long (H, W) in 0..K-1 or 255)`` of a folder source."""

    def __init__(
        self,
        pairs: Sequence[Pair],
        transform: Callable[..., dict[str, Any]] | None,
        num_classes: int,
        ignore_index: int = IGNORE_INDEX,
        decode_size: int | None = None,
    ) -> None:
        super().__init__(pairs, transform, "index", num_classes, None)
        self.ignore_index = int(ignore_index)
        self.decode_size = decode_size

    def load_raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        pair = self.pairs[index]
        image, (w, h) = open_rgb(pair.image, self.decode_size)
        mask = read_mask(pair.mask)  # class indices: palette, grayscale or equal-channel RGB
        check_pair(np.empty((h, w), np.uint8), mask, pair.image, pair.mask)  # stored sizes
        check_labels(mask, self.num_classes, pair.mask, self.ignore_index)
        if self.ignore_index != IGNORE_INDEX:
            mask = np.where(mask == self.ignore_index, IGNORE_INDEX, mask).astype(np.uint8)
        return image, fit_mask(mask, image)  # a JPEG decoded reduced: its labels follow


def _draw(pairs: list[Pair], n: int, seed: int, where: Path, key: str) -> list[Pair]:
    """A seeded draw of ``n`` of ``pairs`` (in stem order) from one folder pair."""
    if len(pairs) < n:
        raise DataError(f"the folder {where} has {len(pairs)} image/mask pairs but data.{key} = "
                        f"{n} were asked; lower it")
    order = np.random.default_rng(seed).permutation(len(pairs))
    return [pairs[i] for i in sorted(order[:n].tolist())]


def folder_datasets(
    root: str | Path, data: DataConfig, read: ReadSpec
) -> tuple[FolderDataset, FolderDataset]:
    """The seeded train / held-out draw (``data.n_train`` + ``data.n_heldout`` pairs, the
    paper's split of docs/method.md#data applied to your folder) of the pairs under ``root``
    (``data.folder_images`` / ``data.folder_masks``), items read as ``read`` says.

    With ``data.heldout_images`` / ``data.heldout_masks`` (subfolders of ``root``, e.g. a
    dataset's own ``val`` / ``valannot``) the held-out pairs come from that pair of folders
    instead: a seeded draw of ``n_train`` pairs from the training folders and of ``n_heldout``
    from the held-out pair, so no held-out image is a training image's neighbour of the same
    folder."""
    n_train, n_heldout, seed = data.n_train, data.n_heldout, data.split_seed
    pairs = folder_pairs(root, data.folder_images, data.folder_masks)
    if data.heldout_images:
        held = folder_pairs(root, data.heldout_images, data.heldout_masks or data.folder_masks)
        train_pairs = _draw(pairs, n_train, seed, Path(root) / data.folder_images, "n_train")
        held_pairs = _draw(held, n_heldout, seed, Path(root) / data.heldout_images, "n_heldout")
    else:
        try:
            tr, ho = split_ids([p.id for p in pairs], n_train, n_heldout, seed)
        except DataError:
            raise DataError(
                f"the folder {root} has {len(pairs)} image/mask pairs but data.n_train + "
                f"data.n_heldout = {n_train} + {n_heldout} = {n_train + n_heldout} were asked; "
                "lower them"
            ) from None
        train_pairs, held_pairs = [pairs[i] for i in tr], [pairs[i] for i in ho]
    return (
        FolderDataset(train_pairs, read.train_transform, data.num_classes, data.ignore_index,
                      read.decode_size),
        FolderDataset(held_pairs, read.heldout_transform, data.num_classes, data.ignore_index,
                      read.decode_size),
    )
