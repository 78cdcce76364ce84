"""The schema of every parameter: the preset's sections as dataclasses, their defaults, ranges
and field docs, the default runs, and the flat RunConfig of one training run."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pspnet_core.config.errors import ParamsError


def _rng(lo: float | None = None, hi: float | None = None) -> dict[str, float | None]:
    return {"min": lo, "max": hi}


SEED_MAX = 2**32 - 1  # numpy's legacy seeding takes 32 bits; larger seeds are refused
COUNT_MAX = 1_000_000  # image counts: far above any dataset this study reads


@dataclass(frozen=True)
class DataConfig:
    """Where the datasets come from (docs/method.md#data; README "Your own data").

    Sources of the multi-class (``voc``) task, ``voc_source``: ``synthetic`` (generated),
    ``voc2012`` (a VOC-layout tree under ``voc_root``: VOCdevkit/VOC2012, any class count) or
    ``folder`` (``voc_root``/``folder_images``/ + ``voc_root``/``folder_masks``/: images
    .jpg/.jpeg/.png, masks grayscale or palette PNGs of class indices 0..num_classes-1, with
    ``ignore_index`` for unlabelled pixels; read by :mod:`pspnet_core.data.folder`, which maps
    ``ignore_index`` to the loss's 255).
    Sources of the leaf task, ``leaf_source``: ``synthetic`` or ``folder`` (``leaf_root``/images/
    + masks/, mask > 0 = disease). ``kaggle`` is the old name of ``folder`` and still accepted:
    it is read as ``folder``.
    """

    root: str = "data"  # relative paths are resolved against the project root
    voc_source: Literal["synthetic", "voc2012", "folder"] = "synthetic"
    # voc2012: folder holding VOCdevkit/VOC2012; folder: holding folder_images/ + folder_masks/
    voc_root: str = "synthetic/voc"  # relative to root (or absolute)
    voc_image_set: Literal["train", "val", "trainval"] = "trainval"
    download: bool = False  # torchvision VOCSegmentation download flag (needs internet)
    num_classes: int = field(default=21, metadata=_rng(2, 1000))  # VOC2012: 20 objects + bg
    n_train: int = field(default=1400, metadata=_rng(1, COUNT_MAX))
    n_heldout: int = field(default=500, metadata=_rng(1, COUNT_MAX))
    split_seed: int = field(default=0, metadata=_rng(0, SEED_MAX))
    folder_images: str = "images"  # voc_source: folder: image subfolder of voc_root
    folder_masks: str = "masks"  # voc_source: folder: mask subfolder of voc_root
    # voc_source: folder: the mask value of unlabelled pixels (read as 255, the loss's ignore)
    ignore_index: int = field(default=255, metadata=_rng(0, 255))
    # voc_source: folder: a separate held-out folder pair (subfolders of voc_root, e.g. val and
    # valannot); "" (default): the held-out images are drawn from folder_images/folder_masks
    heldout_images: str = ""
    heldout_masks: str = ""
    # class names (one per class id 0..num_classes-1) and optional colours ("#rrggbb", one per
    # class) for figures and the explorer; empty: VOC's names for 21 classes, else "class i",
    # and the VOC palette (pspnet_core.data.classes)
    classes: tuple[str, ...] = ()
    class_colors: tuple[str, ...] = ()
    leaf_source: Literal["synthetic", "folder", "kaggle"] = "synthetic"  # kaggle = folder
    leaf_root: str = "synthetic/leaf"  # folder holding images/ and masks/ (relative to root)
    leaf_heldout_fraction: float = field(default=0.2, metadata=_rng(0.01, 0.99))
    synthetic_voc_images: int = field(default=120, metadata=_rng(4, 100_000))
    synthetic_leaf_images: int = field(default=40, metadata=_rng(4, 100_000))
    synthetic_size: int = field(default=160, metadata=_rng(64, 2048))
    synthetic_seed: int = field(default=0, metadata=_rng(0, SEED_MAX))
    num_workers: int = field(default=0, metadata=_rng(0, 64))

    def __post_init__(self) -> None:
        if self.leaf_source == "kaggle":  # the old name: one source, one run hash
            object.__setattr__(self, "leaf_source", "folder")
        if self.voc_source == "folder" and self.ignore_index < self.num_classes:
            raise ParamsError(
                f"data.ignore_index ({self.ignore_index}) is a class id of data.num_classes "
                f"({self.num_classes}): it must be >= num_classes (e.g. 255, or 11 for a set "
                "with classes 0..10 and void 11)"
            )
        if self.classes and len(self.classes) != self.num_classes:
            raise ParamsError(
                f"data.classes: {len(self.classes)} names given but data.num_classes is "
                f"{self.num_classes}; give one name per class id 0..{self.num_classes - 1}"
            )
        if self.class_colors and len(self.class_colors) != self.num_classes:
            raise ParamsError(
                f"data.class_colors: {len(self.class_colors)} colours given but "
                f"data.num_classes is {self.num_classes}; give one '#rrggbb' per class"
            )
        for i, c in enumerate(self.class_colors):
            if not re.fullmatch(r"#[0-9a-fA-F]{6}", c):
                raise ParamsError(f"data.class_colors[{i}]: {c!r} is not a colour; use "
                                  "'#rrggbb', e.g. '#808080'")
        if bool(self.heldout_images) != bool(self.heldout_masks):
            raise ParamsError("data.heldout_images and data.heldout_masks go together: set "
                              "both (a separate held-out folder pair) or neither")


@dataclass(frozen=True)
class ModelConfig:
    """PSPNet options (docs/method.md#model)."""

    weights: str | None = None  # "imagenet", None (random init) or a path to a state dict
    freeze_backbone: bool = False
    aux_weight: float = field(default=0.4, metadata=_rng(0.0, 10.0))
    dropout: float = field(default=0.1, metadata=_rng(0.0, 0.9))
    # BatchNorm layers of a frozen backbone under model.train(): "train" = batch statistics and
    # updated running stats (the paper's listing), "eval" = keep the pretrained statistics
    frozen_bn: Literal["train", "eval"] = "train"
    unet_width: int = field(default=16, metadata=_rng(1, 256))  # U-Net baseline (arch: unet)
    # 8: dilated layer3/layer4 (the prose's 60x60 map at 473, the official PSPNet); 32: the
    # listing's plain torchvision ResNet50 (2048 x 15 x 15 at 473)
    output_stride: Literal[8, 32] = 8
    ppm_bins: tuple[int, ...] = (1, 2, 3, 6)  # pyramid bins (our choice: the PSPNet paper's)
    ppm_channels: int = field(default=512, metadata=_rng(1, 4096))  # channels per PPM branch
    # BatchNorm on the 1x1 pyramid bin: true = conv-BN-ReLU as every bin of the paper's listing
    # (the paper preset); false = conv with bias, no BN (trains at batch 1; smoke, as before)
    ppm_bin1_bn: bool = False


@dataclass(frozen=True)
class AugmentConfig:
    """Affine/blur preset and Mixup/CutMix (docs/method.md#augmentation)."""

    # "pspnet": official-PSPNet-style pipeline (the keys below); "paper": the paper's listing
    preset: Literal["paper", "pspnet"] = "pspnet"
    normalize: Literal["imagenet", "paper"] = "imagenet"
    hflip: float = field(default=0.5, metadata=_rng(0.0, 1.0))
    scale_min: float = field(default=0.5, metadata=_rng(0.05, 10.0))
    scale_max: float = field(default=2.0, metadata=_rng(0.05, 10.0))
    rotate: float = field(default=10.0, metadata=_rng(0.0, 180.0))
    blur_limit: int = field(default=5, metadata=_rng(3, 31))
    # the `paper` pipeline's GaussianBlur(): "1.x" = Albumentations 1.x defaults (kernel 3/5/7
    # with probabilities 0.2/0.4/0.4, OpenCV's fixed sigma-0 taps), "2.x" = 2.x defaults
    # (sigma 0.5-3, kernel from sigma)
    blur: Literal["1.x", "2.x"] = "2.x"
    # the deterministic `none` path (held-out images, runs without augmentation): "letterbox" =
    # longest side -> input size + ignored padding; "center_crop" = the listing's central square
    # of the short side resized to the input size (the geometry its training crop has)
    eval_geometry: Literal["letterbox", "center_crop"] = "letterbox"
    cutmix_prob: float = field(default=0.5, metadata=_rng(0.0, 1.0))


@dataclass(frozen=True)
class SGDConfig:
    """SGD with poly decay (docs/method.md#optimizers)."""

    lr: float = field(default=0.01, metadata=_rng(1e-8, 10.0))
    momentum: float = field(default=0.0, metadata=_rng(0.0, 0.999))  # the paper's code has none
    weight_decay: float = field(default=1e-4, metadata=_rng(0.0, 1.0))
    poly_power: float = field(default=0.9, metadata=_rng(0.0, 10.0))
    poly_step: Literal["epoch", "iter"] = "epoch"
    nesterov: bool = False  # needs momentum > 0 (the U-Net recipe, docs/method.md#model)


@dataclass(frozen=True)
class AdamConfig:
    """Adam (docs/method.md#optimizers)."""

    lr: float = field(default=0.01, metadata=_rng(1e-8, 10.0))
    beta1: float = field(default=0.9, metadata=_rng(0.0, 0.9999))
    beta2: float = field(default=0.999, metadata=_rng(0.0, 0.99999))
    weight_decay: float = field(default=1e-4, metadata=_rng(0.0, 1.0))
    # "constant" lr, or the SGD listing's LambdaLR (1 - epoch/EPOCHS) ** poly_power per epoch
    schedule: Literal["constant", "poly"] = "constant"
    poly_power: float = field(default=0.9, metadata=_rng(0.0, 10.0))


@dataclass(frozen=True)
class TrainConfig:
    """Epochs, batch and input sizes (docs/method.md#data: 473x473)."""

    epochs: int = field(default=30, metadata=_rng(1, 10000))
    batch_size: int = field(default=8, metadata=_rng(1, 4096))
    eval_batch_size: int = field(default=8, metadata=_rng(1, 4096))
    image_size: int = field(default=473, metadata=_rng(64, 4096))
    leaf_epochs: int = field(default=30, metadata=_rng(1, 10000))
    leaf_image_size: int = field(default=473, metadata=_rng(64, 4096))
    # the clean training loss is measured on the first min(n_train, n_heldout, clean_images)
    # training images of the seeded split (train.engine.clean_training_set)
    clean_images: int = field(default=500, metadata=_rng(1, COUNT_MAX))


@dataclass(frozen=True)
class RunSpec:
    """One named training run of the study; ``regime`` is the augmentation regime (the
    ``augment:`` section of the preset says how ``affine`` and ``mix`` are drawn); ``arch`` the
    network (``unet``: the U-Net baseline of docs/method.md#model)."""

    task: Literal["voc", "leaf"] = "voc"
    optimizer: Literal["sgd", "adam"] = "sgd"
    regime: Literal["none", "affine", "mix"] = "affine"
    arch: Literal["pspnet", "unet"] = "pspnet"


@dataclass(frozen=True)
class GalleryConfig:
    """Figures 6-9: how many random images are ranked and how many are shown."""

    n_random: int = field(default=100, metadata=_rng(1, COUNT_MAX))
    n_show: int = field(default=16, metadata=_rng(1, 10_000))
    seed: int = field(default=0, metadata=_rng(0, SEED_MAX))


# The default runs' names: the one place they are written. DEFAULT_RUNS, the claims' criteria
# (which run plays which role) and the notebooks' code use these constants.
SGD_NONE, SGD_AFFINE, SGD_MIX = "sgd_none", "sgd_affine", "sgd_mix"
ADAM_AFFINE, ADAM_MIX = "adam_affine", "adam_mix"
LEAF_RUN, UNET_RUN = "leaf_sgd_affine", "unet_none"

@dataclass(frozen=True)
class ClaimsConfig:
    """Pre-registered choices of the claims (docs/method.md#claims): fixed before any run is
    read, never chosen from the results."""

    # claim 6: the augmented PSPNet run compared with the U-Net (the paper's augmented SGD run)
    claim6_run: str = SGD_MIX


# The U-Net baseline's own recipe (nnU-Net, Isensee et al. 2021, Nature Methods 18:203-211):
# SGD, Nesterov momentum 0.99, lr 0.01, poly decay 0.9, weight decay 3e-5.
UNET_SGD = SGDConfig(lr=0.01, momentum=0.99, weight_decay=3e-5, poly_power=0.9,
                     poly_step="epoch", nesterov=True)

DEFAULT_RUNS: dict[str, RunSpec] = {
    SGD_NONE: RunSpec("voc", "sgd", "none"),
    SGD_AFFINE: RunSpec("voc", "sgd", "affine"),
    SGD_MIX: RunSpec("voc", "sgd", "mix"),
    ADAM_AFFINE: RunSpec("voc", "adam", "affine"),
    ADAM_MIX: RunSpec("voc", "adam", "mix"),
    LEAF_RUN: RunSpec("leaf", "sgd", "affine"),
    UNET_RUN: RunSpec("voc", "sgd", "none", arch="unet"),  # the paper's U-Net baseline
}


@dataclass(frozen=True)
class StudyConfig:
    """A whole preset: ``params/<name>.yaml``."""

    name: str = "custom"
    # every run is trained once per seed, each (run, seed) in its own run folder; the old
    # ``seed: N`` key is still read, as ``seeds: [N]`` (see load_params)
    seeds: tuple[int, ...] = (0,)
    # device and quiet are runtime settings: read when a process builds its train.runtime.Runtime
    # (--device / --quiet replace them), never copied into a run's RunConfig; device also
    # decides what precision "auto" resolves to
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # auto: bf16 where the device computes it natively, else fp32 (pspnet_core.system.precision);
    # a run records the resolved one (RunConfig.precision)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: bool = False
    quiet: bool = False
    # a checkpoint is written after an epoch when this many seconds have passed since the last
    # one, and always after the last epoch (0: after every epoch). Resuming from any epoch gives
    # the same weights as an uninterrupted run, so this only bounds the work an interruption
    # loses; on smoke (a few seconds per epoch) the per-epoch ~400 MB save was 15 % of training
    checkpoint_seconds: float = field(default=60.0, metadata=_rng(0, 1e6))
    runs_dir: str = "runs"
    figures_dir: str = "figures"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    augment: AugmentConfig = AugmentConfig()
    sgd: SGDConfig = SGDConfig()
    adam: AdamConfig = AdamConfig()
    unet_sgd: SGDConfig = UNET_SGD  # the unet runs' optimizer (their own recipe, not `sgd`)
    train: TrainConfig = TrainConfig()
    gallery: GalleryConfig = GalleryConfig()
    claims: ClaimsConfig = ClaimsConfig()
    runs: dict[str, RunSpec] = field(default_factory=lambda: dict(DEFAULT_RUNS))

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    @property
    def seed(self) -> int:
        """The first of ``seeds`` (what single-seed code and ``resolve_run(cfg, run)`` use)."""
        return self.seeds[0]


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs, flattened from a :class:`StudyConfig`.

    ``regime`` is the run's augmentation regime, ``augment`` the preset's augmentation section.
    ``run_hash`` hashes all of it except what ``resolve.HASH_COVERAGE`` leaves out.
    """

    preset: str
    run: str
    task: Literal["voc", "leaf"]
    optimizer: Literal["sgd", "adam"]
    regime: Literal["none", "affine", "mix"]
    epochs: int
    batch_size: int
    eval_batch_size: int
    image_size: int
    clean_images: int
    seed: int
    precision: Literal["fp32", "bf16"]  # resolved from the preset's (auto -> fp32 or bf16)
    channels_last: bool
    # no device or quiet: where and how a process trains is its train.runtime.Runtime, not
    # part of the run (the preset's device/quiet settings are read when the Runtime is built)
    data: DataConfig
    model: ModelConfig
    augment: AugmentConfig
    optim: SGDConfig | AdamConfig
    runs_dir: str
    arch: Literal["pspnet", "unet"] = "pspnet"  # default: params.yaml written before it existed
    checkpoint_seconds: float = 60.0  # StudyConfig.checkpoint_seconds (not hashed: no effect)

    @property
    def num_classes(self) -> int:
        """Output maps: 1 (the analog leaf output) for leaf runs, else ``data.num_classes``."""
        return 1 if self.task == "leaf" else self.data.num_classes

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)


def to_plain(obj: Any) -> Any:
    """Dataclasses -> dicts, tuples -> lists: what YAML and JSON hold."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj
