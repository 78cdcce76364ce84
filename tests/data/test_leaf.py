"""Leaf disease reader: pairs by stem, any mask encoding -> (mask > 0), no ignore label."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from pspnet_core.config import AugmentConfig
from pspnet_core.data.augment import build_transform
from pspnet_core.data.leaf import leaf_datasets, leaf_pairs, split_fraction
from pspnet_core.data.loading import DataError, DatasetNotFoundError


def test_targets_are_binary_floats_for_every_encoding(leaf_root):
    tr, ho = leaf_datasets(leaf_root, 0.25, 0, build_transform("affine", 64, mask_fill=0),
                           build_transform("none", 64, mask_fill=0))
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
    tr, _ = leaf_datasets(leaf_root, 0.2, 0, build_transform("affine", 64, aug, mask_fill=0),
                          None)
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
