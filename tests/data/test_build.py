"""build_datasets / build_eval_dataset from a RunConfig, as docs/INTERFACES.md says."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch

from pspnet_core.config import load_params, resolve_run
from pspnet_core.data import (
    DatasetNotFoundError,
    ReadSpec,
    build_datasets,
    build_eval_dataset,
    dataset_root,
    ensure_dataset,
)
from pspnet_core.data.loading import fit_mask
from pspnet_core.data.synthetic import MARKER

SMALL = {"data.synthetic_voc_images": 12, "data.synthetic_leaf_images": 6,
         "data.synthetic_size": 64, "data.n_train": 8, "data.n_heldout": 4,
         "train.image_size": 64, "train.leaf_image_size": 64}


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PSPNET_HOME", str(tmp_path))
    return tmp_path


def kinds(ds):
    return {type(t).__name__ for t in ds.transform.transforms}


def test_voc_runs_generate_once_and_split(home):
    cfg = load_params("smoke", SMALL)
    train, held = build_datasets(resolve_run(cfg, "sgd_mix"))
    root = home / "data" / "synthetic" / "voc"
    assert (root / MARKER).is_file() and (root / "VOCdevkit" / "VOC2012" / "JPEGImages").is_dir()
    assert len(train) == 8 and len(held) == 4 and not set(train.ids) & set(held.ids)
    assert "Affine" in kinds(train) and "Affine" not in kinds(held)
    x, y = train[0]
    assert x.shape == (3, 64, 64) and y.dtype == torch.long
    stamp = (root / MARKER).stat().st_mtime_ns
    none_train, _ = build_datasets(resolve_run(cfg, "sgd_none"))
    assert "Affine" not in kinds(none_train) and none_train.ids == train.ids
    assert (root / MARKER).stat().st_mtime_ns == stamp  # reused, not regenerated
    ev = build_eval_dataset(resolve_run(cfg, "sgd_affine"), "train")
    assert ev.ids == train.ids and "Affine" not in kinds(ev)
    assert torch.equal(ev[0][0], ev[0][0])
    assert build_eval_dataset(resolve_run(cfg, "sgd_affine"), "heldout").ids == held.ids


def test_leaf_run(home):
    cfg = load_params("smoke", SMALL)
    train, held = build_datasets(resolve_run(cfg, "leaf_sgd_affine"))
    assert len(train) + len(held) == 6 and (home / "data/synthetic/leaf/images").is_dir()
    x, y = train[0]
    assert y.dtype == torch.float32 and set(y.unique().tolist()) <= {0.0, 1.0}
    pad = [t for t in train.transform.transforms if isinstance(t, A.PadIfNeeded)][0]
    assert pad.fill_mask == 0


def test_real_voc_missing_names_the_folder(home):
    cfg = load_params("smoke", {"data.voc_source": "voc2012", "data.voc_root": "."})
    with pytest.raises(DatasetNotFoundError) as err:
        build_datasets(resolve_run(cfg, "sgd_affine"))
    assert str(home / "data" / "VOCdevkit" / "VOC2012") in str(err.value)


def test_dataset_root_is_a_path_and_ensure_dataset_generates(home):
    """Computing the path writes nothing; ensure_dataset is the step that generates (and only
    for a synthetic source)."""
    data = load_params("smoke", SMALL).data
    for task, sub in (("voc", "synthetic/voc"), ("leaf", "synthetic/leaf")):
        assert dataset_root(data, task) == home / "data" / sub
    assert list(home.rglob("*")) == []
    assert ensure_dataset(data, "leaf") == home / "data" / "synthetic" / "leaf"
    assert (home / "data/synthetic/leaf" / MARKER).is_file()
    assert not (home / "data/synthetic/voc").exists()  # one task, one set
    real = load_params("smoke", {"data.voc_source": "folder", "data.voc_root": "mine"}).data
    assert ensure_dataset(real, "voc") == home / "data" / "mine"
    assert not (home / "data" / "mine").exists()  # a real source is never written


def test_read_spec_decodes_at_twice_the_input():
    spec = ReadSpec.for_input(81, None, None)
    assert spec.decode_size == 162 and spec.train_transform is None
    assert ReadSpec().decode_size is None


def test_fit_mask_follows_a_reduced_image():
    mask = np.zeros((8, 6), np.uint8)
    mask[4:, 3:] = 7
    assert fit_mask(mask, np.zeros((8, 6, 3), np.uint8)) is mask  # same size: untouched
    small = fit_mask(mask, np.zeros((4, 3, 3), np.uint8))
    assert small.shape == (4, 3) and small.dtype == np.uint8
    assert set(np.unique(small).tolist()) == {0, 7} and small[3, 2] == 7 and small[0, 0] == 0
