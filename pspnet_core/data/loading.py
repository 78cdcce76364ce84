"""Reading image/mask pairs with clear errors, and seeded DataLoaders.

Reproducibility: Albumentations 2 keeps its own random generators (numpy's global seed does not
reach them), so every item re-seeds its pipeline from ``(epoch seed, index)``. The epoch seed is
the DataLoader's per-iterator ``base_seed``, drawn from the loader's seeded ``torch.Generator``
each time an epoch starts; worker processes recover it in :func:`seed_worker`. Hence: same seed
-> same batches across runs, new draws every epoch, and the same batches for any
``num_workers``.

Images as users have them: pixels are read as stored, everywhere (training, evaluation,
galleries), exactly as masks are; an EXIF orientation tag is not applied, and a size mismatch of
an image that carries one says so (:func:`check_pair`). 16-bit grayscale photos are scaled to
8 bits (``value / 257``), never clipped; 16-bit RGB(A) PNGs are reduced by Pillow itself;
floating-point images are refused. An image larger than Pillow's decompression-bomb limit
(``MAX_PIXELS``) is a :class:`DataError` naming the file, raised before anything is decoded.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, Sampler

from pspnet_core.metrics import IGNORE_INDEX


class DataError(ValueError):
    """A dataset file is unreadable or inconsistent; the message names the file(s)."""


class DatasetNotFoundError(FileNotFoundError):
    """A dataset folder is missing; the message shows the expected layout and the remedy."""


# ---------------------------------------------------------------- reading files

# Pillow refuses images above twice its MAX_IMAGE_PIXELS (about 179 million pixels) before
# decoding them: a few hundred bytes of PNG can claim gigabytes of pixels
MAX_PIXELS = 2 * (Image.MAX_IMAGE_PIXELS or 89_478_485)
EXIF_ORIENTATION = 0x0112
_TRANSPOSING = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def _too_large(path: str | Path, err: Exception) -> DataError:
    return DataError(
        f"image {path} is too large to decode safely ({err.__class__.__name__}: more than "
        f"{MAX_PIXELS:,} pixels, a decompression bomb or a huge scan); downscale it or remove "
        "it from the dataset"
    )


def exif_orientation(path: str | Path) -> int:
    """The EXIF orientation tag of an image file (1, i.e. none, when absent or unreadable)."""
    try:
        with Image.open(path) as im:
            return int(im.getexif().get(EXIF_ORIENTATION, 1) or 1)
    except Exception:  # noqa: BLE001 - only used to explain another error
        return 1


def _to_rgb(im: Image.Image, path: str | Path) -> np.ndarray:
    """RGB uint8 of a loaded image; 16-bit grayscale is scaled (not clipped) to 8 bits."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im)
        if im.mode == "I" and (arr.min(initial=0) < 0 or arr.max(initial=0) > 65535):
            raise DataError(f"image {path}: 32-bit integer pixels ({arr.min()}..{arr.max()}) "
                            "are not a photo; save it as an 8- or 16-bit PNG or a JPEG")
        gray = (arr.astype(np.uint32) * 255 + 32767) // 65535  # 0..65535 -> 0..255, rounded
        return np.repeat(gray.astype(np.uint8)[..., None], 3, axis=2)
    if im.mode == "F":
        raise DataError(f"image {path}: floating-point pixels (mode F) are not a photo; save it "
                        "as an 8- or 16-bit PNG or a JPEG")
    return np.asarray(im.convert("RGB"))


def read_image(path: str | Path) -> np.ndarray:
    """RGB uint8 (H, W, 3); a missing or corrupt file is a :class:`DataError` naming it."""
    return open_rgb(path)[0]


def open_rgb(
    path: str | Path, decode_size: int | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """``(RGB uint8 (H, W, 3), (W, H) stored size)``; a JPEG at least twice ``decode_size`` on
    both sides is decoded reduced (``Image.draft``: the largest libjpeg scale 1/2, 1/4 or 1/8
    that keeps both sides >= ``decode_size``), so a 2419x1814 photo for an 81 px input is not
    decoded whole. PNGs and small JPEGs decode as stored. A missing or corrupt file is a
    :class:`DataError` naming it.
    """
    try:
        with Image.open(path) as im:
            size = im.size
            if decode_size and im.format == "JPEG":
                im.draft("RGB", (int(decode_size), int(decode_size)))
            im.load()
            return _to_rgb(im, path), size
    except FileNotFoundError:
        raise DataError(f"image file {path} does not exist") from None
    except DataError:
        raise
    except Image.DecompressionBombError as err:
        raise _too_large(path, err) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"cannot read image {path} (corrupt or not an image): {err}") from None


def read_mask(path: str | Path, colormap: np.ndarray | None = None) -> np.ndarray:
    """Mask as uint8 (H, W) of stored values: the one mask reader of the VOC, folder and leaf
    sources.

    Palette ("P") PNGs give their palette indices (VOC: the indices ARE the class ids);
    grayscale ("L", "1", or 16/32-bit integer with values <= 255) gives its values; an RGB(A)
    mask is mapped back through ``colormap`` when given, and without one it is read as grayscale
    only if its three channels are equal everywhere. A JPEG mask is a :class:`DataError`: lossy
    compression invents label values at edges.
    """
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if im.format in ("JPEG", "MPO"):
                raise DataError(
                    f"mask {path} is a JPEG image: masks must be lossless palette or grayscale "
                    "PNGs of class indices (or RGB PNGs in the VOC colours); JPEG compression "
                    "invents label values along every edge. Re-export it as PNG."
                )
            if mode in ("P", "L"):
                return np.asarray(im, dtype=np.uint8)
            if mode == "1":
                return np.asarray(im, dtype=np.uint8)
            if mode in ("I", "I;16", "I;16B", "I;16L"):
                arr = np.asarray(im)
                if arr.max(initial=0) > 255:
                    raise DataError(
                        f"mask {path}: values up to {arr.max()} do not fit a label map (0..255)"
                    )
                return arr.astype(np.uint8)
            rgb = np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"mask file {path} does not exist") from None
    except DataError:
        raise
    except Image.DecompressionBombError as err:
        raise _too_large(path, err) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"cannot read mask {path} (corrupt or not an image): {err}") from None
    if colormap is None:  # e.g. a leaf mask saved as RGB: a gray image is read as grayscale
        if not ((rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])).all():
            colours = np.unique(rgb.reshape(-1, 3), axis=0)[:5].tolist()
            raise DataError(
                f"mask {path}: an RGB mask with coloured pixels (e.g. {colours}); masks must be "
                "grayscale (L) or palette (P) PNGs whose pixel values are the class ids (an RGB "
                "mask is accepted only when its three channels are equal)"
            )
        return rgb[..., 0].copy()
    return rgb_to_index(rgb, colormap, path)


def rgb_to_index(rgb: np.ndarray, colormap: np.ndarray, path: str | Path = "mask") -> np.ndarray:
    """Map an RGB-coloured label image back to indices via ``colormap`` (256, 3)."""
    code = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    cm = colormap.astype(np.int64)
    lut = {int((r << 16) | (g << 8) | b): i for i, (r, g, b) in reversed(list(enumerate(cm)))}
    uniq, inv = np.unique(code, return_inverse=True)
    unknown = [u for u in uniq if int(u) not in lut]
    if unknown:
        cols = [((u >> 16) & 255, (u >> 8) & 255, u & 255) for u in unknown[:5]]
        raise DataError(f"mask {path}: RGB colours {cols} are not in the VOC colour map")
    return np.array([lut[int(u)] for u in uniq], dtype=np.uint8)[inv].reshape(code.shape)


def _by_stem(folder: Path, exts: tuple[str, ...]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.suffix.lower() not in exts:
            continue
        if p.is_symlink() and not p.exists():  # is_file() would skip it and blame its partner
            raise DataError(f"{p} is a symbolic link that leads to no file (broken, or a loop "
                            "of links); replace it with the file or remove it")
        if not p.is_file():
            continue
        if p.stem in found:
            raise DataError(f"two files share the stem {p.stem!r}: {found[p.stem]} and {p}")
        found[p.stem] = p
    return found


def _short(paths: list[Path], n: int = 10) -> str:
    shown = ", ".join(str(p) for p in paths[:n])
    return shown + (f" ... and {len(paths) - n} more" if len(paths) > n else "")


def pairs_by_stem(
    img_dir: Path, mask_dir: Path, image_exts: tuple[str, ...], mask_exts: tuple[str, ...],
    what: str = "",
) -> list[Pair]:
    """Image/mask pairs of two folders matched by file stem (hidden files skipped, extensions
    any case), sorted by stem. An unpaired file, two files with one stem, or no images is a
    :class:`DataError` naming them; ``what`` ("leaf ") goes into the message."""
    images = _by_stem(img_dir, image_exts)
    masks = _by_stem(mask_dir, mask_exts)
    no_mask = [images[s] for s in sorted(set(images) - set(masks))]
    no_image = [masks[s] for s in sorted(set(masks) - set(images))]
    if no_mask or no_image:
        parts = []
        if no_mask:
            parts.append(f"{len(no_mask)} image(s) without a mask in {mask_dir}: {_short(no_mask)}")
        if no_image:
            parts.append(
                f"{len(no_image)} mask(s) without an image in {img_dir}: {_short(no_image)}"
            )
        raise DataError(f"unpaired {what}files (pairs are matched by stem): " + "; ".join(parts))
    if not images:
        raise DataError(f"no images in {img_dir} (expected {', '.join(image_exts)})")
    return [Pair(s, images[s], masks[s]) for s in sorted(images)]


def check_pair(image: np.ndarray, mask: np.ndarray, image_path: Any, mask_path: Any) -> None:
    """Image and mask of one size (as stored); a mismatch names both, and says so when the
    image carries an EXIF orientation (pixels are read as stored, the tag is not applied)."""
    ih, iw = image.shape[:2]
    mh, mw = mask.shape[:2]
    if (ih, iw) != (mh, mw):
        note = ""
        orientation = exif_orientation(image_path) if image_path is not None else 1
        if orientation != 1:
            shown = f"{ih}x{iw}" if orientation in _TRANSPOSING else f"{iw}x{ih}"
            note = (
                f". The image carries EXIF orientation {orientation} (viewers show it rotated"
                f"{', as ' + shown if orientation in _TRANSPOSING else ''}); images are read as "
                "stored, ignoring EXIF, like their masks: if the mask was drawn on the rotated "
                "view, save the image rotated without the tag (PIL.ImageOps.exif_transpose)"
            )
        raise DataError(
            f"image/mask size mismatch: image {image_path} is {iw}x{ih} (WxH) but mask "
            f"{mask_path} is {mw}x{mh}{note}"
        )


def check_labels(
    mask: np.ndarray, num_classes: int, mask_path: Any, ignore_index: int = IGNORE_INDEX
):
    """Mask values must be 0..num_classes-1 or ``ignore_index``."""
    if mask.size == 0:
        return
    if int(mask.max()) < num_classes:
        return
    values = np.unique(mask)
    bad = [int(v) for v in values if v >= num_classes and v != ignore_index]
    if bad:
        raise DataError(
            f"mask {mask_path}: values {bad} are outside 0..{num_classes - 1} and "
            f"{ignore_index} (ignore); check data.num_classes or the mask encoding"
        )


def fit_mask(mask: np.ndarray, image: np.ndarray) -> np.ndarray:
    """``mask`` resized (nearest) to ``image``'s height and width when they differ: a JPEG
    decoded reduced (:func:`open_rgb`) takes its labels along, values unchanged (the one copy
    of this step for the VOC, folder and leaf readers)."""
    if image.shape[:2] == mask.shape:
        return mask
    small = Image.fromarray(mask).resize((image.shape[1], image.shape[0]),
                                         Image.Resampling.NEAREST)
    return np.asarray(small, dtype=np.uint8)


# ---------------------------------------------------------------- datasets

DECODE_SCALE = 2  # readers decode JPEGs at >= this many times the network input a side


@dataclass(frozen=True)
class ReadSpec:
    """How a reader turns its pairs into items, built once per run by
    ``pspnet_core.data._datasets`` (docs/method.md#data): the training split's transform, the
    held-out split's (always the deterministic one), and ``decode_size``, the side below which
    a large JPEG is never decoded (``DECODE_SCALE`` x the input size; None decodes everything
    whole). Where the pairs come from and how they split is the reader's ``DataConfig``."""

    train_transform: Callable[..., dict[str, Any]] | None = None
    heldout_transform: Callable[..., dict[str, Any]] | None = None
    decode_size: int | None = None

    @classmethod
    def for_input(
        cls,
        image_size: int,
        train_transform: Callable[..., dict[str, Any]] | None,
        heldout_transform: Callable[..., dict[str, Any]] | None,
    ) -> ReadSpec:
        """The spec of a network input of ``image_size`` px: decode at ``DECODE_SCALE`` x it, so
        the affine preset's upscaling keeps its detail."""
        return cls(train_transform, heldout_transform, DECODE_SCALE * int(image_size))


@dataclass(frozen=True)
class Pair:
    id: str
    image: Path
    mask: Path


class PairedDataset(Dataset):
    """Image/mask pairs through an Albumentations pipeline.

    ``target`` "index": long (H, W) class ids 0..K-1 or 255 (VOC); "binary": float (H, W) in
    {0, 1} = (mask > 0) (leaf). Items are ``(image float (3, H, W), target)``.
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        transform: Callable[..., dict[str, Any]] | None,
        target: str = "index",
        num_classes: int = 21,
        colormap: np.ndarray | None = None,
        decode_size: int | None = None,
    ) -> None:
        if target not in ("index", "binary"):
            raise ValueError(f"target must be 'index' or 'binary', got {target!r}")
        self.pairs = list(pairs)
        self.ids: list[str] = [p.id for p in self.pairs]
        self.transform = transform
        self.target = target
        self.num_classes = num_classes
        self.colormap = colormap
        self.decode_size = decode_size  # large JPEGs decode reduced (open_rgb)
        self._aug_seed: int | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    def set_aug_seed(self, seed: int | None) -> None:
        """Items are then augmented with draws seeded by ``(seed, index)``."""
        self._aug_seed = seed

    def load_raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Checked ``(RGB uint8 (H, W, 3), mask uint8 (H, W))`` before any transform; the
        binary task's mask is already 0/1."""
        pair = self.pairs[index]
        image, (w, h) = open_rgb(pair.image, self.decode_size)
        mask = read_mask(pair.mask, self.colormap if self.target == "index" else None)
        check_pair(np.empty((h, w), np.uint8), mask, pair.image, pair.mask)  # stored sizes
        if self.target == "index":
            check_labels(mask, self.num_classes, pair.mask)
        else:
            mask = (mask > 0).astype(np.uint8)
        return image, fit_mask(mask, image)  # a JPEG decoded reduced: its labels follow

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.load_raw(index)
        if self.transform is None:
            img_t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255
            mask_t = torch.from_numpy(mask.copy())
        else:
            if self._aug_seed is not None and hasattr(self.transform, "set_random_state"):
                ss = np.random.SeedSequence([self._aug_seed, index])
                state = ss.generate_state(2)
                self.transform.set_random_state(
                    np.random.default_rng(state[0]), random.Random(int(state[1]))
                )
            out = self.transform(image=image, mask=mask)
            img_t, mask_t = out["image"], out["mask"]
            if not isinstance(mask_t, torch.Tensor):
                mask_t = torch.from_numpy(np.ascontiguousarray(mask_t))
        if self.target == "index":
            return img_t.float(), mask_t.long()
        return img_t.float(), mask_t.float()


def _seedable(dataset: Any) -> Iterator[Any]:
    """The datasets under ``dataset`` (through Subset / ConcatDataset) that take an aug seed."""
    if hasattr(dataset, "set_aug_seed"):
        yield dataset
    elif hasattr(dataset, "datasets"):
        for d in dataset.datasets:
            yield from _seedable(d)
    elif hasattr(dataset, "dataset"):
        yield from _seedable(dataset.dataset)


def set_aug_seed(dataset: Any, seed: int | None) -> None:
    for d in _seedable(dataset):
        d.set_aug_seed(seed)


# ---------------------------------------------------------------- loaders


def seed_worker(worker_id: int) -> None:
    """worker_init_fn: seed numpy/random per worker and hand the epoch seed to the dataset."""
    info = torch.utils.data.get_worker_info()
    seed = info.seed if info is not None else torch.initial_seed()
    np.random.seed(seed % 2**32)
    random.seed(seed)
    if info is not None:
        set_aug_seed(info.dataset, info.seed - info.id)  # the loader's per-epoch base seed


class SeededDataLoader(DataLoader):
    """A DataLoader whose single-process iterators also pass their epoch seed to the dataset."""

    def __iter__(self):  # noqa: D105
        it = super().__iter__()
        if self.num_workers == 0:
            seed = getattr(it, "_base_seed", None)  # what workers would get (torch internals)
            if seed is None:
                seed = int(torch.randint(0, 2**62, (), generator=self.generator))
            set_aug_seed(self.dataset, int(seed))
        return it


def make_loader(
    dataset: Dataset,
    batch_size: int,
    train: bool,
    seed: int,
    num_workers: int = 0,
    sampler: Sampler | None = None,
) -> DataLoader:
    """Seeded loader: shuffled + ``drop_last`` when ``train`` (unless a sampler is given, e.g.
    a DistributedSampler), in order otherwise; same ``seed`` -> same batches."""
    n = len(dataset)
    if train and n < batch_size:
        raise DataError(
            f"the training set has {n} images, fewer than batch_size {batch_size}: with "
            "drop_last there would be no batch; lower train.batch_size or use more images"
        )
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return SeededDataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=bool(train and sampler is None),
        sampler=sampler,
        drop_last=bool(train),
        num_workers=num_workers,
        generator=generator,
        worker_init_fn=seed_worker,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,  # workers are re-created per epoch with the new seed
    )
