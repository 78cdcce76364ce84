"""Albumentations 2 pipelines: shapes, fills, normalization, and image/mask alignment."""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter

from pspnet_core.config import AugmentConfig
from pspnet_core.data.augment import build_transform, denormalize

# class k is painted in COLOURS[k]; far apart so blur at region edges cannot fake a match
COLOURS = np.array([[128, 128, 128], [230, 20, 20], [20, 230, 20], [20, 20, 230],
                    [230, 230, 20], [20, 230, 230]], dtype=np.uint8)


def coded_sample(seed: int, h: int = 90, w: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """An image whose colour encodes its label: random polygons of classes 1..5 on class 0."""
    rng = np.random.default_rng(seed)
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for k in range(1, 6):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(12, 35)
        t = np.sort(rng.uniform(0, 2 * np.pi, 6))
        draw.polygon(list(zip(cx + r * np.cos(t), cy + r * np.sin(t), strict=True)), fill=k)
    mask = np.array(canvas)
    return COLOURS[mask], mask


def uniform_interior(mask: np.ndarray, size: int = 7) -> np.ndarray:
    """Pixels whose size x size neighbourhood holds a single label (away from edges/blur)."""
    m = Image.fromarray(mask.astype(np.uint8))
    return np.array(m.filter(ImageFilter.MaxFilter(size))) == np.array(
        m.filter(ImageFilter.MinFilter(size))
    )


def mismatch_fraction(image: np.ndarray, mask: np.ndarray) -> tuple[float, int]:
    """Among interior non-ignore pixels, the fraction whose colour is not its label's."""
    inside = uniform_interior(mask) & (mask != 255)
    if not inside.any():
        return 0.0, 0
    expected = COLOURS[mask[inside]].astype(int)
    err = np.abs(image[inside].astype(int) - expected).max(axis=1)
    return float((err > 40).mean()), int(inside.sum())


@pytest.mark.parametrize("normalize", ["imagenet", "paper"])
def test_affine_keeps_image_and_mask_aligned(normalize):
    aug = AugmentConfig(normalize=normalize, hflip=0.5, scale_min=0.5, scale_max=2.0, rotate=10)
    checked, flips_seen = 0, 0
    for seed in range(12):
        image, mask = coded_sample(seed)
        out = build_transform("affine", 64, aug, mask_fill=255, seed=seed)(image=image, mask=mask)
        img = denormalize(out["image"], normalize)
        lab = out["mask"].numpy()
        assert img.shape == (64, 64, 3) and lab.shape == (64, 64)
        frac, n = mismatch_fraction(img, lab)
        # resampling a thin sliver can leave a few interior pixels a blend of two colours
        # (at most 0.5% measured); a mask off by a few pixels is far above 1% (checked below)
        assert frac < 0.01, f"seed {seed}: {frac:.1%} of {n} interior pixels misaligned"
        checked += n
        # the same check does catch a mask that is off by a few pixels
        shifted = np.roll(lab, 5, axis=1)
        flips_seen += mismatch_fraction(img, shifted)[0] > 0.02
        # image border 0 where the mask border is ignore (rotation / shrink fill)
        border = uniform_interior(lab) & (lab == 255)
        if border.any():
            assert img[border].max() <= 12
    assert checked > 12 * 300 and flips_seen >= 8


def test_affine_is_redrawn_per_call_and_reproducible_by_seed():
    image, mask = coded_sample(0)
    t = build_transform("affine", 64, seed=5)
    a, b = t(image=image, mask=mask), t(image=image, mask=mask)
    assert not torch.equal(a["image"], b["image"])
    c = build_transform("affine", 64, seed=5)(image=image, mask=mask)
    assert torch.equal(a["image"], c["image"]) and torch.equal(a["mask"], c["mask"])


@pytest.mark.parametrize("fill", [255, 0])
def test_none_resizes_and_pads_deterministically(fill):
    image, mask = coded_sample(1, h=40, w=80)  # 2:1 -> 64x32 content, padded above/below
    t = build_transform("none", 64, mask_fill=fill)
    a, b = t(image=image, mask=mask), t(image=image, mask=mask)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    lab = a["mask"].numpy()
    assert a["image"].shape == (3, 64, 64) and lab.shape == (64, 64)
    assert (lab[:15] == fill).all() and (lab[-15:] == fill).all()
    assert set(np.unique(lab[20:44])) <= set(range(6))
    if fill == 255:  # (with fill 0 the padding is labelled background but is black)
        frac, n = mismatch_fraction(denormalize(a["image"], "imagenet"), lab)
        assert frac == 0.0 and n > 500


def test_normalization_choices():
    image, mask = coded_sample(2)
    paper = build_transform("none", 64, AugmentConfig(normalize="paper"))(image=image, mask=mask)
    x = paper["image"]
    assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1  # mean 0, std 1: x/255
    net = build_transform("none", 64, AugmentConfig(normalize="imagenet"))(image=image, mask=mask)
    expect = (x - torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]).view(3, 1, 1)
    assert torch.allclose(net["image"], expect, atol=1e-5)
    assert np.abs(denormalize(net["image"], "imagenet").astype(int)
                  - denormalize(x, "paper").astype(int)).max() <= 1
    with pytest.raises(ValueError, match="shape"):
        denormalize(x[0], "paper")


def test_no_warnings_from_albumentations():
    image, mask = coded_sample(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # deprecations and argument UserWarnings alike
        for kind in ("none", "affine"):
            for blur in (3, 4, 7):
                t = build_transform(kind, 64, AugmentConfig(blur_limit=blur), mask_fill=0)
                t(image=image, mask=mask)


def test_unknown_kind():
    with pytest.raises(ValueError, match="affine"):
        build_transform("mix", 64)


def test_zoomed_crop_moves_over_the_whole_image():
    """At scale 2 the crop must be able to show any part of the image (PSPNet's RandScale +
    random crop), not only the centre: the mask encodes each pixel's source column."""
    size = 64
    columns = np.tile(np.arange(size, dtype=np.uint8), (size, 1))  # mask value = source column
    image = np.zeros((size, size, 3), np.uint8)
    aug = AugmentConfig(scale_min=2.0, scale_max=2.0, rotate=0.0, hflip=0.0)
    tf = build_transform("affine", size, aug, mask_fill=255, seed=0)
    seen = set()
    for _ in range(40):
        mask = tf(image=image, mask=columns)["mask"].numpy()
        seen.update(np.unique(mask[mask != 255]).tolist())
    assert min(seen) <= 2 and max(seen) >= size - 3, (min(seen), max(seen))


# ---------------------------------------------------------------- augment.preset: paper | pspnet

# the `paper` preset labels borders 0 (background) and paints them black: shift the coded labels
# to 1..6 so that any 0 in the output mask is border, and its pixels must be black
SHIFTED = np.vstack([[[0, 0, 0]], COLOURS]).astype(np.uint8)


def shifted_mismatch(image: np.ndarray, mask: np.ndarray) -> tuple[float, int]:
    inside = uniform_interior(mask) & (mask != 255)
    if not inside.any():
        return 0.0, 0
    err = np.abs(image[inside].astype(int) - SHIFTED[mask[inside]].astype(int)).max(axis=1)
    return float((err > 40).mean()), int(inside.sum())


@pytest.mark.parametrize("preset", ["paper", "pspnet"])
def test_both_presets_keep_image_and_mask_aligned(preset):
    """Colour-coded image whose mask encodes the colour, checked after the transform; border
    pixels (mask 0 for `paper`, mask 255 for `pspnet`) must be black."""
    aug = AugmentConfig(preset=preset, normalize="paper")
    checked, borders, caught = 0, 0, 0
    for seed in range(10):
        image, mask = coded_sample(seed, h=75, w=100)
        mask = mask + 1  # labels 1..6; SHIFTED[k] is their colour
        image = SHIFTED[mask]
        out = build_transform("affine", 64, aug, mask_fill=255, seed=seed)(image=image, mask=mask)
        img, lab = denormalize(out["image"], "paper"), out["mask"].numpy()
        assert img.shape == (64, 64, 3) and lab.shape == (64, 64)
        border_label = 0 if preset == "paper" else 255
        assert set(np.unique(lab)) <= set(range(1, 7)) | {border_label}
        frac, n = shifted_mismatch(img, np.where(lab == 255, 0, lab))
        assert frac < 0.01, f"{preset} seed {seed}: {frac:.1%} of {n} interior pixels misaligned"
        checked += n
        caught += shifted_mismatch(img, np.roll(np.where(lab == 255, 0, lab), 5, axis=1))[0] > 0.02
        border = uniform_interior(lab) & (lab == border_label)
        borders += int(border.sum())
    assert checked > 10 * 300 and caught >= 7
    assert borders > 0  # scale < 1 or rotation produced a border, and it was checked


def test_paper_preset_on_voc_sized_image_never_gives_ignore():
    """The listing fills scale/rotation borders with 0 (background) in the mask: no 255."""
    tf = build_transform("affine", 97, AugmentConfig(preset="paper"), mask_fill=255, seed=0)
    zeros = 0
    for seed in range(8):
        image, mask = coded_sample(seed, h=375, w=500)
        lab = tf(image=image, mask=mask)["mask"].numpy()
        assert lab.shape == (97, 97) and lab.max() <= 5 and not (lab == 255).any()
        zeros += int((lab == 0).sum())
    assert zeros > 0


def test_paper_crop_is_central_square_of_short_side():
    """RandomResizedCrop(size=(s, s), scale=(1, 1), ratio=(1, 1)) on 500x375 finds no
    full-area square and falls back to the central 375x375 crop, resized to s x s."""
    import albumentations as A
    import cv2

    from pspnet_core.data.augment import paper_steps

    s = 97
    crop = paper_steps(s)[-1]
    assert isinstance(crop, A.RandomResizedCrop)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)
    mask = np.tile((np.arange(500) // 4).astype(np.uint8), (375, 1))  # label = source column / 4
    tf = A.Compose([crop], seed=0)
    x0 = (500 - 375) // 2  # 62
    expect_img = cv2.resize(image[:, x0:x0 + 375], (s, s), interpolation=cv2.INTER_LINEAR)
    expect_mask = cv2.resize(mask[:, x0:x0 + 375], (s, s), interpolation=cv2.INTER_NEAREST_EXACT)
    for _ in range(5):  # never random
        out = tf(image=image, mask=mask)
        assert np.array_equal(out["image"], expect_img)
        assert np.array_equal(out["mask"], expect_mask)
    # columns 62..436 of 500: the crop is central (within one label = 4 source columns)
    assert abs(int(out["mask"].min()) - x0 // 4) <= 1
    assert abs(int(out["mask"].max()) - (x0 + 374) // 4) <= 1


def test_paper_scale_is_isotropic_and_has_no_shift():
    """One scale for both axes (1.x ShiftScaleRotate) and no translation (shift_limit=0): a
    centred square stays a centred square (rotation <= 10 deg barely changes its bbox)."""
    size = 200
    mask = np.zeros((size, size), np.uint8)
    mask[70:130, 70:130] = 1
    image = np.zeros((size, size, 3), np.uint8)
    aug = AugmentConfig(preset="paper")
    ratios = []
    for seed in range(12):
        lab = build_transform("affine", size, aug, seed=seed)(image=image, mask=mask)["mask"]
        ys, xs = np.nonzero(lab.numpy() == 1)
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        assert abs(h - w) <= 2, (seed, h, w)
        assert abs((ys.min() + ys.max()) / 2 - 99.5) <= 1.5
        assert abs((xs.min() + xs.max()) / 2 - 99.5) <= 1.5
        ratios.append(w / 60)
    assert min(ratios) < 0.9 and max(ratios) > 1.3  # scales drawn from 0.5-2


def test_paper_preset_emits_no_warnings():
    image, mask = coded_sample(4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_transform("affine", 64, AugmentConfig(preset="paper"), seed=0)(image=image,
                                                                              mask=mask)


def test_eval_geometry_center_crop_is_the_listings_central_square():
    """augment.eval_geometry: center_crop shows the held-out / `none` images the central square
    of the short side, as the listing's training crop; letterbox pads (255 in the mask)."""
    img = np.zeros((60, 100, 3), np.uint8)
    img[:, 20:80] = 200  # the central 60 x 60 square is bright, the sides dark
    mask = np.zeros((60, 100), np.uint8)
    crop = build_transform("none", 64, AugmentConfig(eval_geometry="center_crop"))
    out = crop(image=img, mask=mask)
    assert denormalize(out["image"], "imagenet").min() >= 190
    assert (out["mask"] != 255).all()
    box = build_transform("none", 64, AugmentConfig(eval_geometry="letterbox"))
    assert (box(image=img, mask=mask)["mask"] == 255).any()


def one_x_ksize(draw: int, hi: int = 7) -> int:
    """Albumentations 1.x ``GaussianBlur.get_params`` on one ``randrange`` result ``draw``
    (the source quoted in pspnet_core/data/augment.py), restated here."""
    return (draw + 1) % (hi + 1) if draw != 0 and draw % 2 != 1 else draw


def test_blur_1x_kernel_sizes_follow_the_1x_draw():
    """3/5/7 with the probabilities 1.x's randrange(3, 8) + even bump gives them."""
    from pspnet_core.data.augment import GaussianBlur1x

    counts = Counter(one_x_ksize(d) for d in range(3, 8))  # each randrange value: weight 1/5
    expected = {k: c / 5 for k, c in counts.items()}
    assert expected == {3: 0.2, 5: 0.4, 7: 0.4}
    blur = GaussianBlur1x()
    blur.set_random_seed(0)
    n = 5000
    drawn = Counter(blur.get_params_dependent_on_data({}, {})["kernel"].size for _ in range(n))
    assert set(drawn) == {3, 5, 7}
    chi2 = sum((drawn[k] - n * p) ** 2 / (n * p) for k, p in expected.items())
    assert chi2 < 13.8, (drawn, chi2)  # chi-square, 2 dof: P(> 13.8) = 0.001
    # a uniform 1/3 draw (the old behaviour) is rejected by the same test
    uniform = {k: n / 3 for k in expected}
    assert sum((uniform[k] - n * p) ** 2 / (n * p) for k, p in expected.items()) > 13.8


def test_blur_1x_kernel_is_opencvs_sigma0_kernel():
    """The taps are cv2.getGaussianKernel(k, 0) (OpenCV's fixed table), and the transform blurs
    an image as cv2.GaussianBlur(img, (k, k), 0) does."""
    cv2 = pytest.importorskip("cv2")
    from pspnet_core.data.augment import GaussianBlur1x, blur_1x_kernel

    for k in (3, 5, 7):
        np.testing.assert_allclose(blur_1x_kernel(k), cv2.getGaussianKernel(k, 0).ravel(),
                                   rtol=0, atol=1e-12)
        sigma = 0.3 * ((k - 1) / 2 - 1) + 0.8  # the sigma formula is not what sigma 0 gives
        w = np.exp(-0.5 * (np.arange(k) - (k - 1) / 2) ** 2 / sigma**2)
        assert np.abs(blur_1x_kernel(k) - w / w.sum()).max() > 1e-3
    with pytest.raises(ValueError, match="3, 5 or 7"):
        blur_1x_kernel(9)
    img = np.random.default_rng(0).integers(0, 255, (40, 40, 3), np.uint8)
    blur = GaussianBlur1x()
    blur.set_random_seed(1)
    for _ in range(6):
        kernel = blur.get_params_dependent_on_data({}, {})["kernel"]
        k = kernel.size
        ours = blur.apply(img, kernel=kernel).astype(int)
        theirs = cv2.GaussianBlur(img, (k, k), 0).astype(int)
        assert np.abs(ours - theirs).max() <= 1, k  # 8-bit rounding of two code paths
    tf = build_transform("affine", 64, AugmentConfig(preset="paper", blur="1.x"), seed=0)
    assert tuple(tf(image=img, mask=np.zeros((40, 40), np.uint8))["image"].shape) == (3, 64, 64)
