"""Albumentations 2.x pipelines (docs/method.md#augmentation): the deterministic ``none`` path
and the random ``affine`` path, all ending in normalize + to-tensor with the mask aligned.
``augment.preset`` picks what ``affine`` means:

- ``pspnet``: the official-PSPNet-style recipe. Like ``none`` it starts by resizing the longest
  side to the input size, so the random scale 0.5-2.0 acts on a picture already at the
  network's scale whatever the source resolution (VOC ~500 px, rice/leaf photos up to 2400 px,
  generated data ~130 px); borders and padding get ``mask_fill``.
- ``paper``: the paper's listing ported to Albumentations 2 (flip, scale/rotate on the same
  canvas with border 0 in image and mask, blur, central square crop resized to the input size).

Masks travel as ``uint8`` (H, W) arrays through the same geometric transforms with nearest
interpolation; ``mask_fill`` is what padding and rotation borders get in the mask (255 = ignore
for VOC, 0 = healthy for the leaf set, which has no ignore label) everywhere except in the
``paper`` preset, whose listing fills borders with 0 (background) in the mask.
"""

from __future__ import annotations

import random
from typing import Literal

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

from pspnet_core.config import AugmentConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Kind = Literal["none", "affine"]
Normalize = Literal["imagenet", "paper"]


def normalization(normalize: Normalize) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) on the 0..1 scale: ImageNet statistics, or the paper's mean 0 / std 1
    (then the network sees pixel / 255)."""
    if normalize == "imagenet":
        return IMAGENET_MEAN, IMAGENET_STD
    if normalize == "paper":
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    raise ValueError(f"normalize must be 'imagenet' or 'paper', got {normalize!r}")


def _odd_blur_limit(limit: int) -> tuple[int, int]:
    hi = limit if limit % 2 == 1 else limit - 1  # Gaussian kernels must be odd
    return (3, max(3, hi))


def build_transform(
    kind: Kind,
    image_size: int,
    aug: AugmentConfig | None = None,
    mask_fill: int = 255,
    seed: int | None = None,
) -> A.Compose:
    """The Albumentations pipeline for ``kind`` producing ``image_size`` x ``image_size`` crops.

    ``none``: with ``aug.eval_geometry == "letterbox"`` longest side -> image_size, pad (image
    0, mask ``mask_fill``); with ``"center_crop"`` the listing's central square of the short
    side resized to image_size (:func:`center_square`); then normalize, tensor.
    ``affine`` with ``aug.preset == "paper"``: :func:`paper_steps`.
    ``affine`` with ``aug.preset == "pspnet"``: the same resize, then horizontal flip
    (p=aug.hflip), random scale
    aug.scale_min..aug.scale_max (the canvas grows or shrinks), rotation +-aug.rotate (image
    border 0, mask border ``mask_fill``), Gaussian blur (always, as the paper), pad + random
    crop (anywhere in the scaled image), normalize, tensor.
    ``seed`` seeds the Compose's own generator (Albumentations 2 ignores numpy's global seed).
    """
    aug = aug or AugmentConfig()
    s = int(image_size)
    resize = A.LongestMaxSize(max_size=s, interpolation=cv2.INTER_LINEAR,
                              mask_interpolation=cv2.INTER_NEAREST,
                              area_for_downscale="image")  # large photos: no aliasing
    pad = A.PadIfNeeded(min_height=s, min_width=s, border_mode=cv2.BORDER_CONSTANT,
                        fill=0, fill_mask=mask_fill)
    mean, std = normalization(aug.normalize)
    tail = [A.Normalize(mean=mean, std=std, max_pixel_value=255.0), ToTensorV2()]
    if kind == "none" and aug.eval_geometry == "center_crop":
        steps = [center_square(s)]
    elif kind == "none":
        steps = [resize, pad]
    elif kind == "affine" and aug.preset == "paper":
        steps = paper_steps(s, aug.blur)
    elif kind == "affine":
        steps = [
            resize,
            A.HorizontalFlip(p=aug.hflip),
            # scale changes the canvas (as PSPNet's RandScale), so the random crop below moves
            # over the whole zoomed image; an Affine scale would keep the canvas and always
            # show the centre
            A.RandomScale(
                scale_limit=(aug.scale_min - 1.0, aug.scale_max - 1.0),
                interpolation=cv2.INTER_LINEAR,
                # NEAREST_EXACT samples pixel centres as INTER_LINEAR does; plain NEAREST is
                # off by half a pixel and misaligns the mask when enlarging
                mask_interpolation=cv2.INTER_NEAREST_EXACT,
                p=1.0,
            ),
            A.Affine(
                rotate=(-aug.rotate, aug.rotate),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=mask_fill,
                p=1.0,
            ),
            A.GaussianBlur(blur_limit=_odd_blur_limit(aug.blur_limit), p=1.0),
            pad,
            A.RandomCrop(height=s, width=s),
        ]
    else:
        raise ValueError(f"augmentation kind must be 'none' or 'affine', got {kind!r}")
    return A.Compose(steps + tail, seed=seed)


# Albumentations 1.x ``GaussianBlur()`` (defaults ``blur_limit=(3, 7)``, ``sigma_limit=0``),
# albumentations-team/albumentations, albumentations/augmentations/blur/transforms.py (1.x),
# ``GaussianBlur.get_params``:
#     ksize = random.randrange(self.blur_limit[0], self.blur_limit[1] + 1)
#     if ksize != 0 and ksize % 2 != 1:
#         ksize = (ksize + 1) % (self.blur_limit[1] + 1)
#     return {"ksize": ksize, "sigma": random.uniform(*self.sigma_limit)}
# randrange(3, 8) draws 3..7 uniformly and bumps 4 -> 5, 6 -> 7: kernel 3, 5, 7 with
# probabilities 1/5, 2/5, 2/5. ``apply`` calls ``cv2.GaussianBlur(img, (ksize, ksize), sigma)``
# with sigma 0, and for sigma <= 0 and an odd kernel up to 7 OpenCV's ``getGaussianKernel`` takes
# fixed binomial taps, not exp(-x^2 / 2 sigma^2) with sigma = 0.3 ((k - 1) / 2 - 1) + 0.8
# (opencv/opencv, modules/imgproc/src/smooth.dispatch.cpp, ``getGaussianKernelBitExact``; the
# older ``small_gaussian_tab`` in smooth.cpp holds the same numbers).
BLUR_1X_LIMIT = (3, 7)
OPENCV_SMALL_GAUSSIAN: dict[int, tuple[float, ...]] = {
    3: (0.25, 0.5, 0.25),
    5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
    7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125),
}


def blur_1x_ksize(rng: random.Random, limit: tuple[int, int] = BLUR_1X_LIMIT) -> int:
    """One kernel size drawn as Albumentations 1.x ``GaussianBlur.get_params`` draws it (the
    comment above): uniform on ``limit[0]..limit[1]``, an even size bumped to the next odd one
    (so 3/5/7 with probabilities 0.2/0.4/0.4 for the default (3, 7))."""
    ksize = rng.randrange(limit[0], limit[1] + 1)
    if ksize != 0 and ksize % 2 != 1:
        ksize = (ksize + 1) % (limit[1] + 1)
    return ksize


def blur_1x_kernel(ksize: int) -> np.ndarray:
    """The 1-D taps ``cv2.GaussianBlur(img, (ksize, ksize), 0)`` uses for ``ksize`` 3, 5 or 7:
    OpenCV's fixed binomial table (the comment above), float64, summing to 1."""
    if ksize not in OPENCV_SMALL_GAUSSIAN:
        raise ValueError(f"1.x GaussianBlur kernels are 3, 5 or 7 taps, got {ksize!r}")
    return np.array(OPENCV_SMALL_GAUSSIAN[ksize], dtype=np.float64)


class GaussianBlur1x(A.GaussianBlur):
    """Albumentations 1.x's ``GaussianBlur()`` defaults under 2.x (paper section 3.2's listing,
    ``A.GaussianBlur(always_apply=True)``): the kernel size drawn as 1.x draws it
    (:func:`blur_1x_ksize`: 3, 5, 7 with probabilities 0.2, 0.4, 0.4) and OpenCV's fixed taps
    for sigma 0 (:func:`blur_1x_kernel`), applied as a separable convolution with OpenCV's
    default reflect-101 border. 2.x's defaults draw sigma from 0.5-3 and size the kernel from it
    (docs/method.md#deviations)."""

    def __init__(self, p: float = 1.0):
        # sigma_limit only satisfies 2.x's validation: the kernel below does not use it
        super().__init__(blur_limit=BLUR_1X_LIMIT, sigma_limit=(0.8, 0.8), p=p)

    def get_params_dependent_on_data(self, params, data):  # noqa: ARG002 - Albumentations API
        return {"kernel": blur_1x_kernel(blur_1x_ksize(self.py_random))}


def center_square(image_size: int) -> A.BasicTransform:
    """The listing's ``RandomResizedCrop(size=(s, s), scale=(1, 1), ratio=(1, 1))``: on a
    non-square image no full-area square fits, so it takes the central square of the short
    side, resized to s x s (on a square image: the whole image). Deterministic."""
    s = int(image_size)
    return A.RandomResizedCrop(
        size=(s, s),
        scale=(1.0, 1.0),
        ratio=(1.0, 1.0),
        interpolation=cv2.INTER_LINEAR,
        mask_interpolation=cv2.INTER_NEAREST_EXACT,
        p=1.0,
    )


def paper_steps(image_size: int, blur: str = "2.x") -> list[A.BasicTransform]:
    """The paper's listing (docs/method.md#augmentation) in Albumentations 2, before normalize:

    ``HorizontalFlip(p=0.5)``; ``ShiftScaleRotate(shift_limit=0, scale_limit=(-0.5, 1.0),
    rotate_limit=10, border_mode=0, p=1)`` as an ``Affine`` (scale 0.5-2 about the centre of
    the same canvas, rotation +-10, no translation, border 0 in the image and 0 = background in
    the mask; ``keep_ratio=True``: 1.x drew one scale for both axes, 2.x's ShiftScaleRotate
    draws two); ``GaussianBlur(always_apply=True)`` with the defaults of ``blur`` ("1.x":
    :class:`GaussianBlur1x`; "2.x": 2.x's own) and p=1;
    ``RandomResizedCrop(size=(s, s), scale=(1, 1), ratio=(1, 1))``, which on a non-square image
    finds no full-area square and falls back to the central square of the short side, resized
    to s x s. The augment keys of the ``pspnet`` preset (hflip, scale, rotate, blur_limit) do
    not apply: the listing fixes them. The mask is resized with ``INTER_NEAREST_EXACT`` (plain
    ``INTER_NEAREST`` is off by half a pixel when enlarging, see the ``pspnet`` RandomScale).
    """
    s = int(image_size)
    return [
        A.HorizontalFlip(p=0.5),
        A.Affine(
            scale=(0.5, 2.0),
            translate_percent=(0.0, 0.0),
            rotate=(-10.0, 10.0),
            shear=(0.0, 0.0),
            keep_ratio=True,  # one scale for both axes, as 1.x ShiftScaleRotate
            interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_NEAREST,
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            fill_mask=0,
            p=1.0,
        ),
        GaussianBlur1x(p=1.0) if blur == "1.x" else A.GaussianBlur(p=1.0),
        center_square(s),
    ]


def denormalize(image: torch.Tensor, normalize: Normalize) -> np.ndarray:
    """Undo :func:`build_transform`'s normalization: float (3, H, W) -> uint8 (H, W, 3)."""
    mean, std = normalization(normalize)
    x = image.detach().to("cpu", torch.float32)
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"expected an image tensor of shape (3, H, W), got {tuple(x.shape)}")
    m = torch.tensor(mean).view(3, 1, 1)
    sd = torch.tensor(std).view(3, 1, 1)
    x = (x * sd + m) * 255.0
    return x.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
