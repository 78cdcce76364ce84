"""The embedded default: small generated
datasets written in the real on-disk layouts, so the VOC and leaf readers load them unchanged.

* VOC-style: ``VOCdevkit/VOC2012/{JPEGImages/*.jpg, SegmentationClass/*.png,
  ImageSets/Segmentation/{train,val,trainval}.txt}``. Each scene holds 1-4 objects of 1-3 of the
  20 classes on a cluttered, textured, desaturated background. Shapes (ellipse, polygon,
  rectangle, blob), sizes, rotations are random; each class has its own hue family and texture
  (stripes, checks, dots, mottled, gradient) with per-instance jitter and pixel noise, so a
  network can learn the classes. Masks are palette PNGs with VOC's colour map and a 255 band
  a few pixels wide along every object boundary, like VOC2012.
* Leaf-style: ``images/*.jpg`` + ``masks/*.png``: a green leaf with veins on a plain or mottled
  background, brown / yellow / white disease spots with a halo; the mask marks the spots,
  stored (in turn) as palette 0/1, grayscale 0/38 and grayscale 0/255 like the Kaggle set.

Deterministic: image ``i`` is drawn from ``SeedSequence([seed, kind, i])``, so the same seed
gives byte-identical files (and the first n images do not depend on how many are made). Trees
are generated into a temporary sibling folder, finished with a marker file and renamed to a
hidden sibling named by their parameters (``.voc.<key>``); the requested path (``voc``) is a
symlink switched atomically to it. A killed generation never leaves a tree that looks complete,
and a tree is never changed once written: a reader that listed its files (the readers resolve
the link) keeps reading the same files while another process regenerates with other parameters.
Generations of other parameters stay as hidden siblings; delete them when nothing runs.

Only paths the generator made are ever replaced: a file, a non-empty folder without the marker,
or a symbolic link to anything but a generated sibling at the requested path is the user's, and
is a :class:`DataError` (never overwritten).
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pspnet_core.data.loading import DataError
from pspnet_core.data.voc import voc_colormap

MARKER = ".synthetic-complete.json"
VERSION = 1
NUM_OBJECT_CLASSES = 20
TEXTURES = ("stripes", "checks", "dots", "mottled", "gradient")

# ---------------------------------------------------------------- drawing helpers


def _rgb(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1))) * 255.0


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1], float32 (h, w)."""
    small = rng.random((cells, cells), dtype=np.float32)
    return np.asarray(Image.fromarray(small, mode="F").resize((w, h), Image.BILINEAR))


def _shape_points(
    rng: np.random.Generator, cx: float, cy: float, a: float, b: float, shape: str
) -> list[tuple[float, float]]:
    """Outline of an ellipse / polygon / rectangle / blob with semi-axes a, b, rotated."""
    if shape == "ellipse":
        t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        x, y = a * np.cos(t), b * np.sin(t)
    elif shape == "rectangle":
        x, y = np.array([-a, a, a, -a]), np.array([-b, -b, b, b])
    elif shape == "polygon":
        k = int(rng.integers(3, 8))
        t = np.sort(rng.uniform(0, 2 * np.pi, k))
        r = rng.uniform(0.6, 1.0, k)
        x, y = a * r * np.cos(t), b * r * np.sin(t)
    else:  # blob: a radius with a few random harmonics
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        r = np.ones_like(t)
        for k in (2, 3, 4, 5):
            r += rng.uniform(0, 0.35 / k * 2) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
        r = np.clip(r, 0.35, None)
        x, y = a * r * np.cos(t), b * r * np.sin(t)
    th = rng.uniform(0, np.pi)
    c, s = np.cos(th), np.sin(th)
    return list(zip((cx + c * x - s * y).tolist(), (cy + s * x + c * y).tolist(), strict=True))


def _polygon_mask(w: int, h: int, points: list[tuple[float, float]]) -> np.ndarray:
    canvas = Image.new("L", (w, h), 0)
    ImageDraw.Draw(canvas).polygon(points, fill=1)
    return np.asarray(canvas, dtype=bool)


def _texture(rng: np.random.Generator, kind: str, h: int, w: int, freq: float) -> np.ndarray:
    """A texture value in [0, 1], float32 (h, w)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    th = rng.uniform(0, np.pi)
    ph = rng.uniform(0, 2 * np.pi)
    u = xx * np.cos(th) + yy * np.sin(th)
    v = -xx * np.sin(th) + yy * np.cos(th)
    f = freq * rng.uniform(0.85, 1.15)
    if kind == "stripes":
        t = 0.5 + 0.5 * np.sin(2 * np.pi * f * u + ph)
    elif kind == "checks":
        t = ((np.sin(2 * np.pi * f * u + ph) * np.sin(2 * np.pi * f * v)) > 0).astype(np.float32)
    elif kind == "dots":
        d = np.sin(2 * np.pi * f * u + ph) * np.sin(2 * np.pi * f * v + ph)
        t = (d > 0.45).astype(np.float32)
    elif kind == "mottled":
        t = _smooth_noise(rng, h, w, max(3, int(round(max(h, w) * f / 1.5))))
    else:  # gradient
        t = (u - u.min()) / max(float(np.ptp(u)), 1.0)
    return t.astype(np.float32)


def _class_style(c: int) -> tuple[float, str, float]:
    """(hue, texture, frequency) of object class c in 1..20: golden-ratio hues, 5 textures."""
    hue = ((c - 1) * 0.618034) % 1.0
    return hue, TEXTURES[(c - 1) % len(TEXTURES)], 0.06 + 0.035 * ((c - 1) // len(TEXTURES))


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Cluttered, desaturated, textured background, float32 (h, w, 3)."""
    base_h = rng.uniform(0, 1)
    lo = _rgb(base_h, rng.uniform(0.0, 0.25), rng.uniform(0.25, 0.55))
    hi = _rgb(base_h + rng.uniform(-0.1, 0.1), rng.uniform(0.0, 0.25), rng.uniform(0.55, 0.9))
    t = _smooth_noise(rng, h, w, int(rng.integers(3, 8)))[..., None]
    img = lo * (1 - t) + hi * t
    for _ in range(int(rng.integers(4, 10))):  # clutter: grey-ish shapes, some textured
        a = rng.uniform(0.05, 0.3) * min(h, w)
        pts = _shape_points(rng, rng.uniform(0, w), rng.uniform(0, h), a, a * rng.uniform(0.3, 1),
                            str(rng.choice(["ellipse", "rectangle", "polygon", "blob"])))
        m = _polygon_mask(w, h, pts)
        col = _rgb(rng.uniform(0, 1), rng.uniform(0.0, 0.22), rng.uniform(0.2, 0.9))
        tex = _texture(rng, str(rng.choice(["mottled", "gradient", "stripes"])), h, w,
                       rng.uniform(0.03, 0.2))
        img[m] = (col * (0.8 + 0.3 * tex[..., None]))[m]
    return img.astype(np.float32)


def _finish(img: np.ndarray, rng: np.random.Generator, sigma: float) -> Image.Image:
    img = img + rng.normal(0, sigma, img.shape).astype(np.float32)
    return Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8), "RGB")


def _size(rng: np.random.Generator, size: int) -> tuple[int, int]:
    """(h, w): sides vary around ``size`` (0.78x-1.25x), usually not square."""
    lo, hi = int(round(size * 0.78)), int(round(size * 1.25))
    return int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))


# ---------------------------------------------------------------- VOC-style scenes


def voc_scene(
    rng: np.random.Generator, size: int, border: int = 2
) -> tuple[Image.Image, np.ndarray]:
    """One scene: RGB image and uint8 label map (0 bg, 1..20 objects, 255 boundary band)."""
    h, w = _size(rng, size)
    img = _background(rng, h, w)
    label = np.zeros((h, w), dtype=np.uint8)
    classes = rng.choice(np.arange(1, NUM_OBJECT_CLASSES + 1), int(rng.integers(1, 4)),
                         replace=False)
    for _ in range(int(rng.integers(1, 5))):
        c = int(rng.choice(classes))
        hue, tex_kind, freq = _class_style(c)
        a = rng.uniform(0.12, 0.34) * min(h, w)
        b = a * rng.uniform(0.5, 1.0)
        shape = str(rng.choice(["ellipse", "polygon", "rectangle", "blob"]))
        pts = _shape_points(rng, rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h, a, b,
                            shape)
        m = _polygon_mask(w, h, pts)
        if m.sum() < 30:
            continue
        ys, xs = np.nonzero(m)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        hh = hue + rng.uniform(-0.025, 0.025)
        c1 = _rgb(hh, rng.uniform(0.6, 0.95), rng.uniform(0.7, 0.98))
        c2 = _rgb(hh + rng.uniform(-0.04, 0.04), rng.uniform(0.55, 0.95), rng.uniform(0.25, 0.5))
        t = _texture(rng, tex_kind, y1 - y0, x1 - x0, freq)[..., None]
        shade = np.linspace(rng.uniform(0.85, 1.0), rng.uniform(1.0, 1.15), x1 - x0)[None, :, None]
        patch = (c1 * (1 - t) + c2 * t) * shade
        box = m[y0:y1, x0:x1]
        img[y0:y1, x0:x1][box] = patch[box]
        label[m] = c
    if border > 0:  # VOC's 255 band along every boundary
        lab = Image.fromarray(label, "L")
        k = 2 * border + 1
        edge = np.asarray(lab.filter(ImageFilter.MaxFilter(k))) != np.asarray(
            lab.filter(ImageFilter.MinFilter(k))
        )
        label = label.copy()
        label[edge] = 255
    return _finish(img, rng, 6.0), label


def _write_voc(out: Path, n: int, size: int, seed: int) -> None:
    voc = out / "VOCdevkit" / "VOC2012"
    jpg, seg = voc / "JPEGImages", voc / "SegmentationClass"
    sets = voc / "ImageSets" / "Segmentation"
    for d in (jpg, seg, sets):
        d.mkdir(parents=True)
    palette = voc_colormap().flatten().tolist()
    ids = [f"2012_{i:06d}" for i in range(n)]
    for i, image_id in enumerate(ids):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1, i]))
        image, label = voc_scene(rng, size)
        image.save(jpg / f"{image_id}.jpg", quality=92)
        mask = Image.fromarray(label, "P")
        mask.putpalette(palette)
        mask.save(seg / f"{image_id}.png")
    val = [x for i, x in enumerate(ids) if i % 4 == 3]
    train = [x for i, x in enumerate(ids) if i % 4 != 3]
    for name, lst in (("train", train), ("val", val), ("trainval", ids)):
        (sets / f"{name}.txt").write_text("".join(f"{x}\n" for x in lst))


# ---------------------------------------------------------------- leaf-style photos


def leaf_scene(rng: np.random.Generator, size: int) -> tuple[Image.Image, np.ndarray]:
    """One leaf photo and its disease mask (uint8 0/1)."""
    h, w = _size(rng, size)
    if rng.random() < 0.5:  # plain light backdrop
        img = np.empty((h, w, 3), np.float32)
        img[:] = _rgb(rng.uniform(0, 1), rng.uniform(0, 0.12), rng.uniform(0.75, 0.95))
        img *= (0.9 + 0.15 * _smooth_noise(rng, h, w, 3))[..., None]
    else:  # soil / table
        t = _smooth_noise(rng, h, w, int(rng.integers(4, 9)))[..., None]
        img = _rgb(rng.uniform(0.05, 0.12), 0.35, 0.25) * (1 - t) + _rgb(0.08, 0.3, 0.5) * t
        img = img.astype(np.float32)
    # the leaf: an ovate outline with a pointed tip, rotated
    length = rng.uniform(0.42, 0.5) * min(h, w)  # leaves fill the frame, as in the Kaggle set
    width = length * rng.uniform(0.4, 0.65)
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    x = length * np.cos(t)
    y = width * np.sin(t) * (0.75 + 0.25 * np.cos(t)) * np.abs(np.sin(t)) ** 0.15
    th = rng.uniform(0, np.pi)
    cx, cy = w / 2 + rng.uniform(-0.08, 0.08) * w, h / 2 + rng.uniform(-0.08, 0.08) * h
    c, s = np.cos(th), np.sin(th)
    leaf = _polygon_mask(w, h, list(zip((cx + c * x - s * y).tolist(),
                                         (cy + s * x + c * y).tolist(), strict=True)))
    hue = rng.uniform(0.22, 0.33)
    g1 = _rgb(hue, rng.uniform(0.55, 0.9), rng.uniform(0.45, 0.75))
    g2 = _rgb(hue + 0.02, rng.uniform(0.6, 0.95), rng.uniform(0.25, 0.4))
    tt = _smooth_noise(rng, h, w, 6)[..., None]
    green = g1 * (1 - tt) + g2 * tt
    veins = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(veins)
    tip = (cx + c * length, cy + s * length)
    base = (cx - c * length, cy - s * length)
    d.line([base, tip], fill=1, width=max(1, int(length / 30)))
    for f in np.linspace(-0.7, 0.7, int(rng.integers(4, 8))):
        px, py = cx + c * f * length, cy + s * f * length
        for side in (-1, 1):
            ex = px + c * 0.35 * length - side * s * width
            ey = py + s * 0.35 * length + side * c * width
            d.line([(px, py), (ex, ey)], fill=1, width=1)
    vein = (np.asarray(veins, bool) & leaf)[..., None]
    green = np.where(vein, green * 1.25 + 15, green)
    img = np.where(leaf[..., None], green, img).astype(np.float32)
    # disease spots inside the leaf, with a halo
    disease = np.zeros((h, w), bool)
    ys, xs = np.nonzero(leaf)
    for _ in range(int(rng.integers(2, 9))):
        j = int(rng.integers(len(ys)))
        r = rng.uniform(0.08, 0.22) * length
        pts = _shape_points(rng, float(xs[j]), float(ys[j]), r, r * rng.uniform(0.5, 1.0), "blob")
        spot = _polygon_mask(w, h, pts) & leaf
        if not spot.any():
            continue
        kind = rng.choice(["brown", "yellow", "white"], p=[0.5, 0.3, 0.2])
        if kind == "brown":
            col = _rgb(rng.uniform(0.05, 0.1), rng.uniform(0.6, 0.9), rng.uniform(0.25, 0.5))
        elif kind == "yellow":
            col = _rgb(rng.uniform(0.12, 0.16), rng.uniform(0.7, 1.0), rng.uniform(0.8, 1.0))
        else:
            col = _rgb(rng.uniform(0, 1), rng.uniform(0, 0.12), rng.uniform(0.85, 1.0))
        halo = np.asarray(Image.fromarray(spot.astype(np.uint8) * 255, "L").filter(
            ImageFilter.MaxFilter(5)), bool) & leaf & ~spot
        img[halo] = img[halo] * 0.6 + _rgb(0.13, 0.7, 0.75) * 0.4
        speck = _smooth_noise(rng, h, w, 8)[..., None]
        img[spot] = (col * (0.85 + 0.3 * speck))[spot]
        disease |= spot
    return _finish(img, rng, 5.0), disease.astype(np.uint8)


def _write_leaf(out: Path, n: int, size: int, seed: int) -> None:
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir(parents=True)
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 2, i]))
        image, mask = leaf_scene(rng, size)
        stem = f"leaf_{i:05d}"
        image.save(out / "images" / f"{stem}.jpg", quality=92)
        style = i % 3  # the encodings found in the Kaggle set
        if style == 0:
            m = Image.fromarray(mask, "P")
            m.putpalette([0, 0, 0, 255, 255, 255])
        elif style == 1:
            m = Image.fromarray(mask * 38, "L")
        else:
            m = Image.fromarray(mask * 255, "L")
        m.save(out / "masks" / f"{stem}.png")


# ---------------------------------------------------------------- generate once, atomically


def _read_marker(target: Path) -> dict | None:
    try:
        return json.loads((target / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _clean_stale(parent: Path, name: str, max_age_s: float = 3600) -> None:
    """Remove temp trees (and temp links) of generations killed long ago."""
    stale = [*parent.glob(f".{name}.tmp-*"), *parent.glob(f".{name}.link-*")]
    for p in stale:
        try:
            if time.time() - p.lstat().st_mtime > max_age_s:
                if p.is_symlink():
                    p.unlink()
                else:
                    shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


def _keyed(target: Path, params: dict) -> Path:
    """The hidden, immutable home of the tree generated with ``params``."""
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    return target.with_name(f".{target.name}.{key}")


def _generate(final: Path, params: dict, writer: Callable[[Path], None]) -> None:
    """Write the tree into a temp sibling, then rename it to ``final`` (once, atomically)."""
    prefix = final.name.rsplit(".", 1)[0]  # ".voc": temp trees match _clean_stale's pattern
    tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}.tmp-", dir=final.parent))
    try:
        writer(tmp)
        (tmp / MARKER).write_text(json.dumps(params, sort_keys=True) + "\n")
        if final.exists() and _read_marker(final) != params:  # an incomplete or foreign leftover
            shutil.rmtree(final)
        try:
            os.rename(tmp, final)
        except OSError:
            if _read_marker(final) != params:
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # a concurrent generation finished first
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if err.filename is None:  # a write that failed mid-file (a full disk) names no file
            err.filename = str(final.parent)
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _ours(target: Path) -> bool:
    """Whether the generator may replace ``target``: absent, a link to a generated sibling
    (``.<name>.<12 hex>``), an empty folder, or a folder holding a generated tree."""
    if not os.path.lexists(target):
        return True
    if os.path.islink(target):
        link = os.readlink(target)
        return re.fullmatch(re.escape(f".{target.name}.") + r"[0-9a-f]{12}", link) is not None
    if target.is_dir():
        return _read_marker(target) is not None or not any(target.iterdir())
    return False


def _ensure(target: Path, params: dict, writer: Callable[[Path], None]) -> Path:
    target = Path(target)
    if not _ours(target):
        if os.path.islink(target):
            what = f"a symbolic link to {os.readlink(target)} that the generator did not make"
        elif target.is_dir():
            what = f"a folder that is not a generated dataset (no {MARKER})"
        else:
            what = "a file, not a generated dataset"
        raise DataError(
            f"{target} exists and is {what}; refusing to overwrite or replace it: move it "
            "away, or point data.voc_root / data.leaf_root elsewhere (or set the source to "
            "folder / voc2012 to read your own data)"
        )
    if _read_marker(target) == params:
        return target
    real_dir = target.is_dir() and not target.is_symlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(target.parent, target.name)
    final = _keyed(target, params)
    if _read_marker(final) != params:
        _generate(final, params, writer)
    if real_dir:  # a tree generated in place by older code, or an empty folder: move it aside
        old = _read_marker(target)
        if old is None:
            target.rmdir()
        elif not _keyed(target, old).exists():
            os.rename(target, _keyed(target, old))
        else:
            shutil.rmtree(target)
    link = target.with_name(f".{target.name}.link-{os.getpid()}-{time.time_ns()}")
    os.symlink(final.name, link)
    os.replace(link, target)  # atomic: readers see the old tree or the new one, never a mix
    return target


def ensure_synthetic_voc(root: str | Path, n_images: int, size: int = 160, seed: int = 0) -> Path:
    """Generate (once) a VOC2012-style tree at ``root`` (holding VOCdevkit/VOC2012)."""
    params = {"kind": "voc", "n": int(n_images), "size": int(size), "seed": int(seed),
              "version": VERSION}
    return _ensure(Path(root), params, lambda out: _write_voc(out, n_images, size, seed))


def ensure_synthetic_leaf(root: str | Path, n_images: int, size: int = 160, seed: int = 0) -> Path:
    """Generate (once) a leaf-style tree at ``root`` (holding images/ and masks/)."""
    params = {"kind": "leaf", "n": int(n_images), "size": int(size), "seed": int(seed),
              "version": VERSION}
    return _ensure(Path(root), params, lambda out: _write_leaf(out, n_images, size, seed))
