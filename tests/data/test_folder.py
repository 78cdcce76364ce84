"""data/folder.py (``data.voc_source: folder``), the ``kaggle`` -> ``folder`` alias, the example
presets, and one epoch on the real 2-class VOC-layout sample when ../shared/data is present."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pspnet_core.config import ParamsError, load_params, resolve_run, run_hash
from pspnet_core.data import DataError, DatasetNotFoundError, build_datasets
from pspnet_core.data.folder import FolderDataset, folder_pairs
from pspnet_core.data.loading import open_rgb
from pspnet_core.metrics import IGNORE_INDEX
from pspnet_core.system.paths import SOURCE_ROOT

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_preset import write_tiny  # noqa: E402

RICE = SOURCE_ROOT.parent / "shared" / "data" / "rice-voc-sample"
EXAMPLES = SOURCE_ROOT / "params" / "examples"


def street_scene(root: Path, n: int = 8, size: int = 64, void: int = 11) -> Path:
    """PNG images + grayscale PNG masks with classes 0..10 and void = 11 (a CamVid-like set)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size + 8, 3), dtype=np.uint8)).save(
            root / "images" / f"0001TP_{i:04d}.png"
        )
        mask = rng.integers(0, 11, (size, size + 8), dtype=np.uint8)
        mask[:4] = void
        Image.fromarray(mask, mode="L").save(root / "masks" / f"0001TP_{i:04d}.png")
    return root


def test_street_scene_void_11_becomes_ignore(tmp_path):
    root = street_scene(tmp_path / "camvid")
    ds = FolderDataset(folder_pairs(root), None, num_classes=11, ignore_index=11)
    image, mask = ds.load_raw(0)
    assert image.shape == (64, 72, 3) and mask.shape == (64, 72)
    assert (mask[:4] == IGNORE_INDEX).all() and mask[4:].max() <= 10
    assert 11 not in np.unique(mask)
    _, y = ds[0]
    assert y.dtype == torch.long and set(y.unique().tolist()) <= set(range(11)) | {255}


def test_through_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("PSPNET_HOME", str(tmp_path))
    street_scene(tmp_path / "data" / "mine", n=10)
    cfg = load_params("smoke", {"data.voc_source": "folder", "data.voc_root": "mine",
                                "data.num_classes": 11, "data.ignore_index": 11,
                                "data.n_train": 6, "data.n_heldout": 3, "train.image_size": 64})
    train, held = build_datasets(resolve_run(cfg, "sgd_affine"))
    assert isinstance(train, FolderDataset) and len(train) == 6 and len(held) == 3
    assert not set(train.ids) & set(held.ids)
    assert train.decode_size == 128
    x, y = held[0]
    assert x.shape == (3, 64, 64) and int(y.max()) == 255  # void rows and padding
    again, _ = build_datasets(resolve_run(cfg, "sgd_affine"))
    assert again.ids == train.ids  # seeded split
    too_many = load_params("smoke", {"data.voc_source": "folder", "data.voc_root": "mine",
                                     "data.num_classes": 11, "data.ignore_index": 11,
                                     "data.n_train": 9, "data.n_heldout": 3})
    with pytest.raises(DataError, match="has 10 image/mask pairs.*9 \\+ 3"):
        build_datasets(resolve_run(too_many, "sgd_affine"))
    with pytest.raises(ParamsError, match="ignore_index \\(5\\).*>= num_classes"):
        load_params("smoke", {"data.voc_source": "folder", "data.num_classes": 11,
                              "data.ignore_index": 5})


def test_other_subfolder_names_and_missing_folder(tmp_path):
    root = street_scene(tmp_path / "s")
    (root / "images").rename(root / "train")
    (root / "masks").rename(root / "trainannot")
    assert len(folder_pairs(root, "train", "trainannot")) == 8
    with pytest.raises(DatasetNotFoundError, match="(?s)expected the folder .*images.*layout"):
        folder_pairs(root)


def test_palette_jpeg_and_rgb_masks(tmp_path):
    root = tmp_path / "p"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.new("RGB", (20, 10), (9, 9, 9)).save(root / "images" / "a.JPG")
    pal = Image.fromarray(np.full((10, 20), 2, np.uint8), mode="P")
    pal.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] * 10)
    pal.save(root / "masks" / "a.png")
    assert FolderDataset(folder_pairs(root), None, num_classes=3).load_raw(0)[1].max() == 2
    ds = FolderDataset(folder_pairs(root), None, num_classes=2)
    with pytest.raises(DataError, match=r"a.png: values \[2\] are outside 0..1 and 255"):
        ds.load_raw(0)
    # an RGB mask is read as grayscale when its three channels are equal, else refused
    Image.fromarray(np.full((10, 20, 3), 1, np.uint8)).save(root / "masks" / "a.png")
    assert ds.load_raw(0)[1].max() == 1
    colour = np.zeros((10, 20, 3), np.uint8)
    colour[..., 0] = 128
    Image.fromarray(colour).save(root / "masks" / "a.png")
    with pytest.raises(DataError, match="a.png: an RGB mask with coloured pixels.*palette"):
        ds.load_raw(0)
    (root / "masks" / "b.png").write_bytes(b"")
    with pytest.raises(DataError, match="1 mask\\(s\\) without an image.*b.png"):
        folder_pairs(root)


def test_large_jpeg_decodes_reduced_with_its_mask(tmp_path):
    root = tmp_path / "big"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    yy, xx = np.mgrid[0:1200, 0:1600]
    Image.fromarray(np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)).save(
        root / "images" / "p.jpg", quality=90
    )
    mask = (xx >= 800).astype(np.uint8)
    Image.fromarray(mask, mode="L").save(root / "masks" / "p.png")
    image, size = open_rgb(root / "images" / "p.jpg", 194)
    assert size == (1600, 1200) and image.shape == (300, 400, 3)  # 1/4: both sides >= 194
    assert open_rgb(root / "images" / "p.jpg")[0].shape == (1200, 1600, 3)
    ds = FolderDataset(folder_pairs(root), None, num_classes=2, decode_size=194)
    image, m = ds.load_raw(0)
    assert image.shape[:2] == m.shape == (300, 400)
    assert (m[:, :200] == 0).all() and (m[:, 200:] == 1).all()
    small = FolderDataset(folder_pairs(root), None, num_classes=2, decode_size=700)
    assert small.load_raw(0)[0].shape == (1200, 1600, 3)  # 1/2 would give 600 < 700


def test_kaggle_is_an_alias_of_folder():
    kaggle = load_params("smoke", {"data.leaf_source": "kaggle", "data.leaf_root": "leaf"})
    folder = load_params("smoke", {"data.leaf_source": "folder", "data.leaf_root": "leaf"})
    assert kaggle.data.leaf_source == "folder" == folder.data.leaf_source
    assert run_hash(resolve_run(kaggle, "leaf_sgd_affine")) == run_hash(
        resolve_run(folder, "leaf_sgd_affine")
    )
    with pytest.raises(ParamsError, match="leaf_source.*'synthetic', 'folder', 'kaggle'"):
        load_params("smoke", {"data.leaf_source": "zip"})


def test_example_presets_load():
    rice = load_params(EXAMPLES / "rice_voc.yaml")
    assert rice.name == "rice_voc" and rice.data.num_classes == 2
    assert rice.data.voc_source == "voc2012"
    mine = load_params(EXAMPLES / "my_folder.yaml")
    assert mine.data.voc_source == "folder" and mine.data.ignore_index == 11


@pytest.mark.slow
@pytest.mark.skipif(not RICE.is_dir(), reason=f"no real-data sample at {RICE} (../shared/data)")
def test_rice_voc_sample_trains_one_epoch(tmp_path, capsys):
    """README "Your own data", as written: a VOC-layout tree with 2 classes, --set overrides."""
    from pspnet_core.train import cli as train

    params = write_tiny(tmp_path)
    code = train.main([
        "--params", str(params), "--run", "sgd_mix",
        "--set", "data.voc_source=voc2012", "--set", f"data.voc_root={RICE}",
        "--set", "data.voc_image_set=train", "--set", "data.num_classes=2",
        "--set", "data.n_train=4", "--set", "data.n_heldout=2", "--set", "train.epochs=1",
    ])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "sgd_mix: done" in out.out
    (hist,) = (tmp_path / "runs").glob("sgd_mix-*/history.csv")
    import pandas as pd

    h = pd.read_csv(hist)
    assert len(h) == 1 and np.isfinite(h["heldout_miou"]).all()
