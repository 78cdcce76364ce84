"""Leaf disease reader: pairs by stem, any mask encoding -> (mask > 0), no ignore label."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from pspnet_core.config import AugmentConfig, DataConfig
from pspnet_core.data.augment import build_transform
from pspnet_core.data.leaf import LeafDataset, leaf_datasets, leaf_pairs, split_fraction
from pspnet_core.data.loading import DataError, DatasetNotFoundError, ReadSpec


def test_targets_are_binary_floats_for_every_encoding(leaf_root):
    tr, ho = leaf_datasets(leaf_root, DataConfig(leaf_heldout_fraction=0.25),
                           ReadSpec(build_transform("affine", 64, mask_fill=0),
                                    build_transform("none", 64, mask_fill=0)))
    assert len(tr) + len(ho) == 9 and len(ho) == 2
    for ds in (tr, ho):
        for i in range(len(ds)):
            _, raw = ds.load_raw(i)
            stored = np.array(Image.open(ds.pairs[i].mask))
            assert np.array_equal(raw, (stored > 0).astype(np.uint8)) and raw.any()
    x, y = tr[0]
    assert x.shape == (3, 64, 64) and y.dtype == torch.float32
    assert set(y.unique().tolist()) <= {0.0, 1.0}


def test_leaf_borders_are_zero_not_ignore(leaf_root):
    aug = AugmentConfig(scale_min=0.3, scale_max=0.5, rotate=45)
    tr, _ = leaf_datasets(leaf_root, DataConfig(leaf_heldout_fraction=0.2),
                          ReadSpec(build_transform("affine", 64, aug, mask_fill=0)))
    for i in range(len(tr)):
        x, y = tr[i]
        assert set(y.unique().tolist()) <= {0.0, 1.0}


def test_other_image_extensions(leaf_root, tmp_path):
    root = tmp_path / "leaf"
    shutil.copytree(leaf_root, root)
    imgs = sorted((root / "images").iterdir())
    imgs[0].rename(imgs[0].with_suffix(".JPG"))
    imgs[1].rename(imgs[1].with_suffix(".jpeg"))
    Image.open(imgs[2]).save(imgs[2].with_suffix(".png"))
    imgs[2].unlink()
    (root / "images" / ".DS_Store").write_bytes(b"junk")
    pairs = leaf_pairs(root)
    assert len(pairs) == 9
    assert {p.image.suffix for p in pairs} == {".jpg", ".JPG", ".jpeg", ".png"}


def test_unpaired_files_are_an_error_naming_them(leaf_root, tmp_path):
    root = tmp_path / "leaf"
    shutil.copytree(leaf_root, root)
    (root / "masks" / "leaf_00001.png").unlink()
    shutil.copy(root / "masks" / "leaf_00002.png", root / "masks" / "orphan.png")
    with pytest.raises(DataError) as err:
        leaf_pairs(root)
    msg = str(err.value)
    assert "leaf_00001.jpg" in msg and "orphan.png" in msg


def test_missing_folder_error(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="images"):
        leaf_pairs(tmp_path)


def test_split_fraction_is_seeded():
    tr, ho = split_fraction(40, 0.2, 0)
    assert len(ho) == 8 and len(tr) == 32 and not set(tr) & set(ho)
    assert (tr, ho) == split_fraction(40, 0.2, 0) and (tr, ho) != split_fraction(40, 0.2, 1)
    with pytest.raises(DataError, match="1 images"):
        split_fraction(1, 0.2, 0)


def big_leaf(root, size=(2160, 1440)):
    """One Kaggle-size leaf photo (JPEG, a left half / right half pattern) with its 0/38 mask."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    w, h = size
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:, : w // 2] = (30, 140, 40)
    rgb[:, w // 2 :] = (150, 90, 20)
    Image.fromarray(rgb).save(root / "images" / "leaf_big.jpg", quality=90)
    mask = np.zeros((h, w), np.uint8)
    mask[:, w // 2 :] = 38
    Image.fromarray(mask, "L").save(root / "masks" / "leaf_big.png")
    return root


def test_large_jpeg_decodes_reduced_through_draft(tmp_path, monkeypatch):
    """A 2160x1440 photo for an 81 px input (decode_size 162) is decoded by libjpeg at 1/8
    (270x180, never below 162 a side), through Image.draft; the mask follows (nearest)."""
    root = big_leaf(tmp_path / "leaf")
    from PIL import JpegImagePlugin

    calls = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        calls.append((self.format, self.size, mode, size))
        return real_draft(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    ds = LeafDataset(leaf_pairs(root), None, decode_size=162)
    image, mask = ds.load_raw(0)
    assert calls and calls[0][:2] == ("JPEG", (2160, 1440)) and calls[0][3] == (162, 162)
    assert image.shape == (180, 270, 3) and mask.shape == (180, 270)  # 1/8, both sides >= 162
    assert set(np.unique(mask)) == {0, 1}
    assert (mask[:, :134] == 0).all() and (mask[:, 136:] == 1).all()  # labels stay aligned
    whole = LeafDataset(leaf_pairs(root), None)  # no decode_size: decoded as stored
    assert whole.load_raw(0)[0].shape == (1440, 2160, 3)
    near = LeafDataset(leaf_pairs(root), None, decode_size=800)
    assert near.load_raw(0)[0].shape == (1440, 2160, 3)  # 1/2 would give 720 < 800


def test_small_images_decode_exactly_as_before(leaf_root):
    """The synthetic set (64 px here, 128 px in smoke) is below twice any input size: bytes
    identical to a plain full decode, so training histories do not change."""
    data = DataConfig(leaf_heldout_fraction=0.25)
    reduced, _ = leaf_datasets(leaf_root, data, ReadSpec(decode_size=130))
    plain, _ = leaf_datasets(leaf_root, data, ReadSpec())
    for i in range(len(plain)):
        a, b = reduced.load_raw(i), plain.load_raw(i)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_stored_size_mismatch_is_checked_before_reducing(tmp_path):
    root = big_leaf(tmp_path / "leaf")
    Image.fromarray(np.zeros((300, 400), np.uint8), "L").save(root / "masks" / "leaf_big.png")
    with pytest.raises(DataError, match=r"size mismatch.*2160x1440.*400x300"):
        LeafDataset(leaf_pairs(root), None, decode_size=162).load_raw(0)


def test_build_datasets_passes_twice_the_input_size(tmp_path, monkeypatch):
    from pspnet_core.config import load_params, resolve_run
    from pspnet_core.data import build_datasets

    monkeypatch.setenv("PSPNET_HOME", str(tmp_path))
    cfg = load_params("smoke", {"data.synthetic_leaf_images": 6, "data.synthetic_size": 64,
                                "train.leaf_image_size": 65})
    train, held = build_datasets(resolve_run(cfg, "leaf_sgd_affine"))
    assert train.decode_size == held.decode_size == 130
