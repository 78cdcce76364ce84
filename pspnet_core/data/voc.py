"""PASCAL VOC2012 segmentation (docs/method.md#data) on ``torchvision.datasets.VOCSegmentation``.

torchvision finds (or downloads) the tree and the id lists; images and palette masks are then
read here and go through Albumentations together. A palette PNG's index values are the class
ids (0 background, 1..20 objects, 255 the ignore border). Masks must be lossless: palette or
grayscale PNGs of class indices, or RGB PNGs in the VOC colours; a JPEG mask is an error (its
compression noise would invent labels). Every id in ``ImageSets/Segmentation/<set>.txt`` must be
a single file name (no ``/``, ``..`` or absolute path): a list naming files elsewhere is refused
with the file and line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torchvision.datasets import VOCSegmentation

from pspnet_core.config import DataConfig
from pspnet_core.data.loading import (
    DataError,
    DatasetNotFoundError,
    Pair,
    PairedDataset,
    ReadSpec,
)

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

VOC_LAYOUT = """\
  <root>/VOCdevkit/VOC2012/
      JPEGImages/<id>.jpg
      SegmentationClass/<id>.png          palette PNG: index = class id, 255 = ignore
      ImageSets/Segmentation/train.txt    one id per line (also val.txt, trainval.txt)"""


def voc_colormap() -> np.ndarray:
    """The VOC palette, uint8 (256, 3): class i gets the bit-interleaved colour of i."""
    cmap = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


def _missing(root: Path, what: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"VOC2012 not found: expected {what}.\nThe reader wants this layout:\n"
        f"{VOC_LAYOUT.replace('<root>', str(root))}\n"
        "To get it: set data.download: true (needs internet; torchvision fetches "
        "VOCtrainval_11-May-2012.tar, about 2 GB), or download that tar yourself and unpack it "
        f"so that {root / 'VOCdevkit' / 'VOC2012'} exists (tar -xf VOCtrainval_11-May-2012.tar "
        f"-C {root}). data.root + data.voc_root choose <root>; the embedded default "
        "(data.voc_source: synthetic) needs no download."
    )


def check_id_list(list_file: Path) -> None:
    """Every non-blank line of an ImageSets list is one plain file name (a single path
    component): ``../x``, ``sub/x``, ``/abs/x`` would read files outside the tree."""
    try:
        text = list_file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{list_file} is not UTF-8 text (byte {err.start}: {err.reason}); an "
                        "id list holds one image id per line, saved as UTF-8") from None
    except OSError as err:
        raise DataError(f"{list_file} cannot be read: {err.strerror}") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        image_id = line.strip()
        if not image_id:
            continue
        if ("/" in image_id or "\\" in image_id or "\0" in image_id
                or image_id in (".", "..") or Path(image_id).is_absolute()):
            raise DataError(
                f"{list_file}, line {lineno}: image id {image_id!r} is not a single file name "
                "(ids name files inside JPEGImages/ and SegmentationClass/; no '/', '..' or "
                "absolute paths)"
            )


def voc_pairs(
    root: str | Path, image_set: str = "trainval", download: bool = False
) -> list[Pair]:
    """The (id, image, mask) paths of ``image_set`` under ``root`` (holding VOCdevkit/VOC2012).

    VOCSegmentation strips each line (trailing spaces are fine) but keeps blank lines as an id
    "" and duplicates; both are dropped here.
    """
    root = Path(root)
    if root.is_symlink():  # a generated tree: read the generation the link points at now
        root = root.resolve()
    voc_root = root / "VOCdevkit" / "VOC2012"
    if not download:
        if not voc_root.is_dir():
            raise _missing(root, f"the folder {voc_root}")
        list_file = voc_root / "ImageSets" / "Segmentation" / f"{image_set}.txt"
        if not list_file.is_file():
            raise _missing(root, f"the id list {list_file}")
        check_id_list(list_file)  # before torchvision reads it (its own errors name no file)
    try:
        vs = VOCSegmentation(str(root), year="2012", image_set=image_set, download=download)
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise _missing(root, f"the folder {voc_root} ({err})") from None
    list_file = voc_root / "ImageSets" / "Segmentation" / f"{image_set}.txt"
    if download and list_file.is_file():
        check_id_list(list_file)
    pairs: list[Pair] = []
    seen: set[str] = set()
    for img, mask in zip(vs.images, vs.masks, strict=True):
        stem = Path(img).name[: -len(".jpg")]
        if not stem or stem in seen:
            continue
        seen.add(stem)
        pairs.append(Pair(stem, Path(img), Path(mask)))
    if not pairs:
        raise DataError(f"{voc_root}/ImageSets/Segmentation/{image_set}.txt lists no image ids")
    return pairs


def split_ids(
    ids: Sequence[str], n_train: int, n_heldout: int, seed: int
) -> tuple[list[int], list[int]]:
    """Seeded random draw of ``n_train`` + ``n_heldout`` disjoint positions (paper: 1400/500)."""
    need = n_train + n_heldout
    if len(ids) < need:
        raise DataError(
            f"the VOC image set has {len(ids)} images but data.n_train + data.n_heldout = "
            f"{n_train} + {n_heldout} = {need} were asked; lower them or use a larger image set"
        )
    order = np.random.default_rng(seed).permutation(len(ids))
    return sorted(order[:n_train].tolist()), sorted(order[n_train:need].tolist())


class VOCDataset(PairedDataset):
    """VOC items: ``(image float (3, H, W), long (H, W) in 0..K-1 or 255)``."""

    def __init__(
        self,
        pairs: Sequence[Pair],
        transform: Callable[..., dict[str, Any]] | None,
        num_classes: int = 21,
        decode_size: int | None = None,
    ) -> None:
        super().__init__(pairs, transform, "index", num_classes, voc_colormap(), decode_size)


def voc_datasets(
    root: str | Path, data: DataConfig, read: ReadSpec
) -> tuple[VOCDataset, VOCDataset]:
    """The paper's seeded train / held-out split (docs/method.md#data: ``data.n_train`` = 1400
    and ``data.n_heldout`` = 500 images of VOC2012, drawn with ``data.split_seed``) of
    ``data.voc_image_set`` under ``root``, fetched first when ``data.download``; items read as
    ``read`` says (JPEGs much larger than ``read.decode_size`` decode reduced:
    ``loading.open_rgb``)."""
    pairs = voc_pairs(root, data.voc_image_set, data.download)
    tr, ho = split_ids([p.id for p in pairs], data.n_train, data.n_heldout, data.split_seed)
    return (
        VOCDataset([pairs[i] for i in tr], read.train_transform, data.num_classes,
                   read.decode_size),
        VOCDataset([pairs[i] for i in ho], read.heldout_transform, data.num_classes,
                   read.decode_size),
    )
