"""The embedded default: deterministic, real layouts, generated once and atomically."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pspnet_core.data import synthetic
from pspnet_core.data.loading import DataError
from pspnet_core.data.synthetic import MARKER, ensure_synthetic_leaf, ensure_synthetic_voc
from pspnet_core.data.voc import voc_colormap


def tree_hash(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = tree_hash(ensure_synthetic_voc(tmp_path / "a", 6, 64, seed=3))
    b = tree_hash(ensure_synthetic_voc(tmp_path / "b", 6, 64, seed=3))
    c = tree_hash(ensure_synthetic_voc(tmp_path / "c", 6, 64, seed=4))
    assert a == b and len(a) == 6 * 2 + 3 + 1
    assert a != c
    la = tree_hash(ensure_synthetic_leaf(tmp_path / "la", 4, 64, seed=3))
    lb = tree_hash(ensure_synthetic_leaf(tmp_path / "lb", 4, 64, seed=3))
    assert la == lb and len(la) == 4 * 2 + 1


def test_voc_tree_layout_palette_and_border(voc_root):
    voc = voc_root / "VOCdevkit" / "VOC2012"
    sets = {n: (voc / "ImageSets" / "Segmentation" / f"{n}.txt").read_text().split()
            for n in ("train", "val", "trainval")}
    assert sorted(sets["train"] + sets["val"]) == sorted(sets["trainval"])
    assert len(sets["trainval"]) == 16 and not set(sets["train"]) & set(sets["val"])
    sizes, classes = set(), set()
    for image_id in sets["trainval"]:
        image = Image.open(voc / "JPEGImages" / f"{image_id}.jpg")
        mask = Image.open(voc / "SegmentationClass" / f"{image_id}.png")
        assert image.mode == "RGB" and mask.mode == "P" and image.size == mask.size
        assert np.array_equal(np.array(mask.getpalette()).reshape(-1, 3), voc_colormap())
        m = np.array(mask)
        assert set(np.unique(m)) <= set(range(21)) | {255}
        classes |= set(np.unique(m)) - {0, 255}
        # the 255 band: an object pixel never touches a background pixel directly
        obj, bg = (m > 0) & (m < 255), m == 0
        assert not (obj[1:] & bg[:-1]).any() and not (obj[:, 1:] & bg[:, :-1]).any()
        assert not (obj[:-1] & bg[1:]).any() and not (obj[:, :-1] & bg[:, 1:]).any()
        sizes.add(image.size)
    assert len(sizes) > 4 and any(w != h for w, h in sizes)  # sizes vary, not square
    assert len(classes) >= 6  # several of the 20 classes


def test_leaf_tree_layout_and_mask_encodings(leaf_root):
    images = sorted((leaf_root / "images").glob("*.jpg"))
    masks = sorted((leaf_root / "masks").glob("*.png"))
    assert [p.stem for p in images] == [p.stem for p in masks] and len(images) == 9
    encodings = set()
    for p in masks:
        m = Image.open(p)
        values = tuple(int(v) for v in np.unique(np.array(m)))
        encodings.add((m.mode, values))
        assert values[-1] > 0  # every leaf has some disease
    assert encodings == {("P", (0, 1)), ("L", (0, 38)), ("L", (0, 255))}


def test_generated_once_and_reused(tmp_path, monkeypatch):
    root = ensure_synthetic_voc(tmp_path / "voc", 4, 64)
    marker = (root / MARKER).stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("regenerated a complete tree")

    monkeypatch.setattr(synthetic, "_write_voc", boom)
    assert ensure_synthetic_voc(tmp_path / "voc", 4, 64) == root
    assert (root / MARKER).stat().st_mtime_ns == marker


def test_changed_parameters_regenerate(tmp_path):
    """Other parameters: a new generation behind the same path; the old tree is not touched, so a
    reader that listed its files (through the resolved link) keeps reading the same bytes."""
    root = ensure_synthetic_voc(tmp_path / "voc", 4, 64)
    old_tree = root.resolve()
    before = tree_hash(old_tree)
    ensure_synthetic_voc(tmp_path / "voc", 5, 64)
    assert len(list((root / "VOCdevkit/VOC2012/JPEGImages").glob("*.jpg"))) == 5
    assert root.resolve() != old_tree and tree_hash(old_tree) == before
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["voc"]
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or ".link-" in p.name]
    ensure_synthetic_voc(tmp_path / "voc", 4, 64)  # back: the kept generation, not regenerated
    assert root.resolve() == old_tree


def test_killed_generation_leaves_no_complete_looking_tree(tmp_path, monkeypatch):
    real = synthetic.voc_scene
    calls = {"n": 0}

    def dies_midway(rng, size, border=2):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(rng, size, border)

    monkeypatch.setattr(synthetic, "voc_scene", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic_voc(tmp_path / "voc", 6, 64)
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temp tree
    monkeypatch.setattr(synthetic, "voc_scene", real)
    root = ensure_synthetic_voc(tmp_path / "voc", 6, 64)
    assert (root / MARKER).is_file()


def test_refuses_to_overwrite_a_real_dataset(tmp_path):
    target = tmp_path / "voc"
    (target / "VOCdevkit").mkdir(parents=True)
    with pytest.raises(DataError, match="refusing to overwrite"):
        ensure_synthetic_voc(target, 4, 64)
