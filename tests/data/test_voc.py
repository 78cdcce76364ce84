"""VOC2012 reader: VOCSegmentation file lists, palette masks, seeded split, clear errors."""

from __future__ import annotations

import shutil
import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets

from pspnet_core.config import DataConfig, load_params, resolve_run
from pspnet_core.data import build_datasets
from pspnet_core.data import voc as voc_module
from pspnet_core.data.augment import build_transform
from pspnet_core.data.loading import DataError, DatasetNotFoundError, ReadSpec
from pspnet_core.data.voc import (
    VOC_CLASSES,
    split_ids,
    voc_colormap,
    voc_datasets,
    voc_pairs,
)

SHARED_DATA = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data").resolve()

RICE = SHARED_DATA / "rice-voc-sample"


def test_colormap_and_classes():
    cm = voc_colormap()
    assert cm.shape == (256, 3) and cm.dtype == np.uint8
    assert tuple(cm[0]) == (0, 0, 0) and tuple(cm[1]) == (128, 0, 0)
    assert tuple(cm[15]) == (192, 128, 128) and tuple(cm[255]) == (224, 224, 192)
    assert len(VOC_CLASSES) == 21 and VOC_CLASSES[15] == "person"


class FakeVOCSegmentation:
    """Stands in for torchvision's VOCSegmentation: records how it was called and serves the
    file lists of a 12-image tree (nothing is read before an item is asked for)."""

    calls: list[dict] = []

    def __init__(self, root, year="2012", image_set="train", download=False, **kw):
        FakeVOCSegmentation.calls.append(
            {"root": Path(root), "year": year, "image_set": image_set, "download": download})
        base = Path(root) / "VOCdevkit" / "VOC2012"
        self.images = [str(base / "JPEGImages" / f"2007_{i:06d}.jpg") for i in range(12)]
        self.masks = [str(base / "SegmentationClass" / f"2007_{i:06d}.png") for i in range(12)]


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _real_voc_cfg(home, monkeypatch, **over):
    monkeypatch.setenv("PSPNET_HOME", str(home))
    cfg = load_params("smoke", {"data.voc_source": "voc2012", "data.voc_root": "voc",
                                "data.n_train": 8, "data.n_heldout": 4, **over})
    return resolve_run(cfg, "sgd_affine")


def test_data_download_true_reaches_torchvision(tmp_path, monkeypatch):
    """``data.download: true`` is handed to VOCSegmentation (which fetches the tar)."""
    FakeVOCSegmentation.calls = []
    monkeypatch.setattr(torchvision.datasets, "VOCSegmentation", FakeVOCSegmentation)
    monkeypatch.setattr(voc_module, "VOCSegmentation", FakeVOCSegmentation, raising=False)
    train, held = build_datasets(_real_voc_cfg(tmp_path, monkeypatch, **{"data.download": True}))
    assert FakeVOCSegmentation.calls == [{"root": tmp_path / "data" / "voc", "year": "2012",
                                          "image_set": "trainval", "download": True}]
    assert len(train) == 8 and len(held) == 4


def test_missing_tree_without_download_fails_offline_and_writes_nothing(tmp_path, monkeypatch):
    """The default (download: false) with no VOC tree: one DatasetNotFoundError naming the folder
    and the remedy, before any download is tried; no network, no files."""
    _no_network(monkeypatch)
    rc = _real_voc_cfg(tmp_path, monkeypatch)
    assert rc.data.download is False  # the preset's default
    with pytest.raises(DatasetNotFoundError) as err:
        build_datasets(rc)
    msg = str(err.value)
    assert str(tmp_path / "data" / "voc" / "VOCdevkit" / "VOC2012") in msg
    assert "download: true" in msg and "VOCtrainval_11-May-2012.tar" in msg
    assert list(tmp_path.rglob("*")) == []
    # the same through the reader's own default
    with pytest.raises(DatasetNotFoundError):
        voc_module.voc_datasets(tmp_path / "elsewhere", DataConfig(n_train=2, n_heldout=1),
                                ReadSpec())
    assert list(tmp_path.rglob("*")) == []


def test_items_are_class_indices_with_ignore(voc_root):
    tr, ho = voc_datasets(voc_root, DataConfig(n_train=10, n_heldout=4),
                          ReadSpec(build_transform("affine", 64), build_transform("none", 64)))
    assert len(tr) == 10 and len(ho) == 4 and not set(tr.ids) & set(ho.ids)
    for ds in (tr, ho):
        x, y = ds[0]
        assert x.shape == (3, 64, 64) and x.dtype == torch.float32
        assert y.shape == (64, 64) and y.dtype == torch.long
        assert set(y.unique().tolist()) <= set(range(21)) | {255}
    _, raw = tr.load_raw(0)  # palette indices are the class ids
    assert set(np.unique(raw)) - {0, 255}


def test_split_is_seeded_and_checked():
    ids = [f"id{i}" for i in range(30)]
    a = split_ids(ids, 20, 5, seed=0)
    assert a == split_ids(ids, 20, 5, seed=0) and a != split_ids(ids, 20, 5, seed=1)
    assert len(a[0]) == 20 and len(a[1]) == 5 and not set(a[0]) & set(a[1])
    with pytest.raises(DataError, match=r"30 images.*1400 \+ 500 = 1900"):
        split_ids(ids, 1400, 500, seed=0)


def test_missing_dataset_error_shows_layout_and_remedy(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        voc_pairs(tmp_path / "nowhere")
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / "VOCdevkit" / "VOC2012") in msg
    for needle in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation",
                   "download: true", "VOCtrainval_11-May-2012.tar"):
        assert needle in msg


def test_trailing_spaces_blank_lines_and_duplicates_in_id_lists(voc_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(voc_root, root)
    lst = root / "VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt"
    ids = lst.read_text().split()
    lst.write_text("".join(f"{i}  \n" for i in ids) + ids[0] + "\t\n\n   \n")
    assert [p.id for p in voc_pairs(root, "train")] == ids


@pytest.mark.skipif(not RICE.is_dir(), reason="../shared/data/rice-voc-sample is absent")
def test_rice_voc_sample():
    """A real VOC-layout set: 2 classes, trailing spaces in its id lists, large photos."""
    lines = (RICE / "VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt").read_text()
    assert " \n" in lines  # the quirk this test is about
    pairs = voc_pairs(RICE, "train")
    assert len(pairs) == 120 and all(p.id == p.id.strip() and p.image.is_file() for p in pairs)
    rice = DataConfig(voc_image_set="train", n_train=100, n_heldout=20, num_classes=2)
    tr, ho = voc_datasets(RICE, rice, ReadSpec(build_transform("affine", 97),
                                               build_transform("none", 97)))
    for ds in (tr, ho):
        x, y = ds[0]
        assert x.shape == (3, 97, 97) and set(y.unique().tolist()) <= {0, 1, 255}
    assert 1 in set(np.unique(ho.load_raw(0)[1])) | set(np.unique(tr.load_raw(0)[1]))
    with pytest.raises(DataError, match="120 images"):
        voc_datasets(RICE, replace(rice, n_heldout=40), ReadSpec())


def test_large_jpeg_decodes_reduced_and_its_mask_follows(tmp_path):
    """A 1600x1200 photo for a small input decodes at 1/2..1/8 scale (Image.draft), and its
    palette mask is resized (nearest) to the decoded size, so labels stay aligned and valid."""
    from PIL import Image

    from pspnet_core.data.loading import Pair
    from pspnet_core.data.voc import VOCDataset, voc_colormap

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (1200, 1600, 3), dtype=np.uint8)
    mask = np.zeros((1200, 1600), np.uint8)
    mask[:, 800:] = 7  # right half class 7, with a 255 border column band
    mask[:, 796:804] = 255
    Image.fromarray(image).save(tmp_path / "p.jpg", quality=90)
    m = Image.fromarray(mask, "P")
    m.putpalette(voc_colormap().ravel().tolist())
    m.save(tmp_path / "p.png")
    pair = Pair("p", tmp_path / "p.jpg", tmp_path / "p.png")

    full_img, full_mask = VOCDataset([pair], None, 21).load_raw(0)
    assert full_img.shape == (1200, 1600, 3) and full_mask.shape == (1200, 1600)
    small_img, small_mask = VOCDataset([pair], None, 21, decode_size=194).load_raw(0)
    h, w = small_img.shape[:2]
    assert (h, w) == small_mask.shape and 194 <= min(h, w) < 600  # reduced, not below the ask
    assert set(np.unique(small_mask)) <= {0, 7, 255}
    assert (small_mask[:, : w // 3] == 0).all() and (small_mask[:, -w // 3:] == 7).all()


def test_mask_of_another_size_than_the_stored_image_is_still_refused(tmp_path):
    from PIL import Image

    from pspnet_core.data.loading import DataError, Pair
    from pspnet_core.data.voc import VOCDataset

    Image.fromarray(np.zeros((600, 800, 3), np.uint8)).save(tmp_path / "p.jpg")
    Image.fromarray(np.zeros((300, 400), np.uint8), "P").save(tmp_path / "p.png")
    ds = VOCDataset([Pair("p", tmp_path / "p.jpg", tmp_path / "p.png")], None, 21,
                    decode_size=100)
    with pytest.raises(DataError, match=r"size mismatch.*800x600.*400x300"):
        ds.load_raw(0)
