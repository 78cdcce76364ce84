"""Seeded loaders (same seed -> same batches, re-drawn each epoch) and clear file errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Subset

from pspnet_core.data.augment import build_transform
from pspnet_core.data.loading import DataError, Pair, PairedDataset, make_loader, read_mask
from pspnet_core.data.voc import VOCDataset, voc_colormap, voc_pairs


@pytest.fixture()
def dataset(voc_root):
    return VOCDataset(voc_pairs(voc_root)[:12], build_transform("affine", 64), 21)


def epochs(loader, n=2):
    return [[(x.clone(), y.clone()) for x, y in loader] for _ in range(n)]


def same(a, b):
    return len(a) == len(b) and all(
        torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b, strict=True)
    )


def test_same_seed_same_batches_and_redrawn_each_epoch(dataset):
    a = epochs(make_loader(dataset, 4, train=True, seed=0))
    b = epochs(make_loader(dataset, 4, train=True, seed=0))
    assert same(a[0], b[0]) and same(a[1], b[1])
    assert not same(a[0], a[1])
    c = epochs(make_loader(dataset, 4, train=True, seed=1), 1)
    assert not same(a[0], c[0])
    # in order (no shuffle) the augmentation itself is re-drawn each epoch
    e = epochs(make_loader(dataset, 4, train=False, seed=0))
    assert not torch.equal(e[0][0][0], e[1][0][0])


def test_workers_give_the_same_batches(dataset):
    a = epochs(make_loader(dataset, 4, train=True, seed=0), 1)
    b = epochs(make_loader(dataset, 4, train=True, seed=0, num_workers=2), 1)
    assert same(a[0], b[0])


def test_subset_is_seeded_too(dataset):
    sub = Subset(dataset, list(range(8)))
    a = epochs(make_loader(sub, 4, True, 0), 1)[0]
    assert same(a, epochs(make_loader(sub, 4, True, 0), 1)[0])


def test_drop_last_in_training_only(dataset):
    assert len(make_loader(dataset, 5, train=True, seed=0)) == 2
    ev = make_loader(dataset, 5, train=False, seed=0)
    assert [len(y) for _, y in ev] == [5, 5, 2]
    with pytest.raises(DataError, match="12 images, fewer than batch_size 16"):
        make_loader(dataset, 16, train=True, seed=0)


def write_pair(tmp_path, name="x", size=(20, 10), mask_size=None, values=(0, 1)):
    image = tmp_path / f"{name}.jpg"
    mask = tmp_path / f"{name}.png"
    Image.new("RGB", size, (10, 20, 30)).save(image)
    m = np.zeros(mask_size or size, dtype=np.uint8).T.copy()
    m.flat[: len(values)] = values
    m = Image.fromarray(m, "P")
    m.putpalette(voc_colormap().flatten().tolist())  # PIL truncates indices beyond the palette
    m.save(mask)
    return Pair(name, image, mask)


def test_corrupt_image_names_the_file(tmp_path):
    pair = write_pair(tmp_path)
    pair.image.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match=f"cannot read image {pair.image}"):
        PairedDataset([pair], None)[0]


def test_missing_image_names_the_file(tmp_path):
    pair = write_pair(tmp_path)
    pair.image.unlink()
    with pytest.raises(DataError, match=f"{pair.image} does not exist"):
        PairedDataset([pair], None)[0]


def test_size_mismatch_names_both_sizes(tmp_path):
    pair = write_pair(tmp_path, size=(20, 10), mask_size=(21, 10))
    with pytest.raises(DataError, match=r"is 20x10 \(WxH\) but mask .* is 21x10"):
        PairedDataset([pair], build_transform("none", 64))[0]


def test_mask_values_outside_classes_and_ignore(tmp_path):
    pair = write_pair(tmp_path, values=(0, 1, 255, 30, 22))
    ds = PairedDataset([pair], None, num_classes=21)
    with pytest.raises(DataError, match=rf"mask {pair.mask}: values \[22, 30\] are outside 0..20"):
        ds[0]
    x, y = PairedDataset([write_pair(tmp_path, "ok", values=(0, 20, 255))], None)[0]
    assert set(y.unique().tolist()) == {0, 20, 255}


def test_read_mask_palette_grey_rgb_16bit_and_jpeg(tmp_path):
    """The one mask reader: palette indices (not colours), grayscale, 16-bit values <= 255,
    equal-channel RGB read as grayscale; coloured RGB (without a colour map), 16-bit values
    > 255 and JPEG masks are DataErrors naming the file."""
    pal = Image.fromarray(np.full((4, 6), 2, np.uint8), mode="P")
    pal.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] * 10)
    pal.save(tmp_path / "p.png")
    assert read_mask(tmp_path / "p.png").max() == 2
    Image.fromarray(np.full((4, 6), 7, np.uint8), mode="L").save(tmp_path / "l.png")
    assert read_mask(tmp_path / "l.png").max() == 7
    Image.fromarray(np.full((4, 6), 9, np.uint16)).save(tmp_path / "i16.png")
    mask = read_mask(tmp_path / "i16.png")
    assert mask.dtype == np.uint8 and mask.max() == 9
    Image.fromarray(np.full((4, 6), 300, np.uint16)).save(tmp_path / "big.png")
    with pytest.raises(DataError, match=r"big.png: values up to 300 do not fit a label map"):
        read_mask(tmp_path / "big.png")
    Image.fromarray(np.full((4, 6, 3), 3, np.uint8)).save(tmp_path / "g.png")
    assert read_mask(tmp_path / "g.png").tolist() == np.full((4, 6), 3).tolist()
    colour = np.zeros((4, 6, 3), np.uint8)
    colour[..., 0] = 128
    Image.fromarray(colour).save(tmp_path / "c.png")
    with pytest.raises(DataError, match="c.png: an RGB mask with coloured pixels.*palette"):
        read_mask(tmp_path / "c.png")
    assert read_mask(tmp_path / "c.png", voc_colormap()).max() == 1  # VOC colour 1 = (128, 0, 0)
    Image.fromarray(np.full((4, 6), 1, np.uint8), mode="L").save(tmp_path / "j.png", "JPEG")
    with pytest.raises(DataError, match="j.png is a JPEG image"):
        read_mask(tmp_path / "j.png")
