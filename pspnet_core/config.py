"""One validated schema for every parameter of the study (docs/architecture.md).

``load_params("smoke")`` reads ``params/smoke.yaml``; ``load_params(path)`` reads any YAML file.
Overrides are dotted keys (``{"train.epochs": 3}``) or keywords with ``__`` for the dot
(``train__epochs=3``); both command lines read them as ``--set key=value`` through
:func:`parse_overrides`. Every key, type and range is checked before anything runs: an error names
the key and says what is allowed.

``resolve_run(cfg, "sgd_mix")`` flattens the preset into the :class:`RunConfig` of one training
run; its :func:`run_hash` covers everything that changes training (not the device, progress bars).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pspnet_core.system.paths import PARAMS_DIR
from pspnet_core.system.precision import resolve_precision


class ParamsError(ValueError):
    """A parameter file or override is invalid; the message names the key and what is allowed."""


def _rng(lo: float | None = None, hi: float | None = None) -> dict[str, float | None]:
    return {"min": lo, "max": hi}


SEED_MAX = 2**32 - 1  # numpy's legacy seeding takes 32 bits; larger seeds are refused
COUNT_MAX = 1_000_000  # image counts: far above any dataset this study reads
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")
# (dataclass, field) pairs whose string value is a name used in folder and file names
_NAME_FIELDS = {("StudyConfig", "name"), ("RunConfig", "run"), ("RunConfig", "preset")}


NAME_MAX = 100  # a run folder is <run>-s<seed>-<hash>: file names stop at 255 bytes
VALUE_SHOWN = 120  # characters of a value quoted in an error message
PRESET_MAX_BYTES = 1 << 20  # a preset is a few KB; never parse more


def show(value: Any, limit: int = VALUE_SHOWN) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters (a 58 MB value from a
    YAML alias bomb, or a pasted file, never reaches the terminal whole)."""
    text = repr(value) if not isinstance(value, (list, dict, tuple)) or len(value) < 1000 \
        else f"<{type(value).__name__} of {len(value)} items>"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class _NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases (``*name``): a "billion laughs" preset of a few
    hundred bytes would otherwise expand to gigabytes. Presets never need them. It also refuses
    a key given twice in one mapping (plain YAML keeps the last: a second ``train:`` section
    would silently drop every key of the first), naming both lines."""

    def construct_mapping(self, node, deep=False):  # noqa: ANN001 - PyYAML's signature
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    first = seen.get(key)
                    seen.setdefault(key, line)
                except TypeError:  # an unhashable key: PyYAML's own error says so
                    break
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {show(key, 60)} appears twice in one mapping (lines "
                        f"{first} and {line}); keep one (a second section replaces the first "
                        "whole)", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)

    def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML's signature
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"YAML aliases (*{event.anchor}) are not allowed in presets; write "
                "the value out", event.start_mark)
        return super().compose_node(parent, index)


def load_yaml_text(text: str, where: str = "YAML") -> Any:
    """Safe, bounded YAML: no Python tags, no aliases, at most ``PRESET_MAX_BYTES``; a
    :class:`ParamsError` naming ``where`` otherwise."""
    if len(text) > PRESET_MAX_BYTES:
        raise ParamsError(f"{where}: {len(text)} characters, more than a preset can hold "
                          f"({PRESET_MAX_BYTES}); is it the right file?")
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        text = " ".join(str(err).split())
        text = text if len(text) <= 400 else f"{text[:400]}... ({len(text)} characters)"
        raise ParamsError(f"{where}: not valid YAML: {text}") from None
    except RecursionError:
        raise ParamsError(f"{where}: not valid YAML: nested too deeply") from None
    except ValueError as err:  # e.g. an integer of more digits than Python converts
        raise ParamsError(f"{where}: not valid YAML: {show(str(err), 200)}") from None


def check_name(value: str, key: str) -> str:
    """Preset and run names become folder and file names: ``[A-Za-z0-9_.-]+`` without ``..``,
    not starting with ``.`` (``.`` is the folder itself; a leading dot hides it), at most
    ``NAME_MAX`` characters."""
    if (not isinstance(value, str) or not NAME_PATTERN.fullmatch(value) or ".." in value
            or value.startswith(".")):
        raise ParamsError(
            f"{key}: {show(value)} is not a valid name; use letters, digits, '_', '.' and '-' "
            "only, not starting with '.' (no '/', no '..', no spaces): names become folder "
            "and file names"
        )
    if len(value) > NAME_MAX:
        raise ParamsError(f"{key}: {show(value, 40)} is {len(value)} characters long; names "
                          f"become folder names: use at most {NAME_MAX}")
    return value


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
    ``run_hash`` hashes all of it except the fields in ``NOT_HASHED``.
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
    seed: int
    precision: Literal["fp32", "bf16"]  # resolved from the preset's (auto -> fp32 or bf16)
    channels_last: bool
    device: str
    quiet: bool
    data: DataConfig
    model: ModelConfig
    augment: AugmentConfig
    optim: SGDConfig | AdamConfig
    runs_dir: str
    arch: Literal["pspnet", "unet"] = "pspnet"  # default: params.yaml written before it existed
    checkpoint_seconds: float = 60.0  # StudyConfig.checkpoint_seconds (not hashed: no effect)

    NOT_HASHED: typing.ClassVar[tuple[str, ...]] = ("preset", "device", "quiet", "runs_dir",
                                                     "checkpoint_seconds")

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


# ---------------------------------------------------------------- validation


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints accepted for floats)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ParamsError(f"{key}: {show(value)} is not allowed; use {_type_name(tp)}")
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ParamsError:
                pass
        raise ParamsError(f"{key}: {show(value)} has the wrong type; expected {_type_name(tp)}")
    if tp is type(None):
        if value is not None:
            raise ParamsError(f"{key}: expected null, got {show(value)}")
        return None
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{key}: expected true or false, got {show(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{key}: expected an integer, got {show(value)}")
        if abs(value) >= 2**63:
            raise ParamsError(f"{key}: {show(value)} is out of range (too large)")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{key}: expected a number, got {show(value)}")
        try:
            value = float(value)
        except OverflowError:
            raise ParamsError(f"{key}: {show(value)} is out of range (too large)") from None
        if not math.isfinite(value):
            raise ParamsError(f"{key}: {show(value)} is not allowed; expected a finite number")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"{key}: expected a string, got {show(value)}")
        return value
    if dataclasses.is_dataclass(tp):
        return build_config_section(tp, value, key)
    if origin in (tuple, list):  # tuple[int, ...] / list[int]: a YAML list
        item_tp = typing.get_args(tp)[0]
        if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple)):
            raise ParamsError(f"{key}: expected a list, e.g. [0, 1, 2], got {show(value)}")
        items = [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        _, value_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: expected a mapping of name -> settings, got {show(value)}")
        return {check_name(str(k), f"{key}.{k}"): _coerce(v, value_tp, f"{key}.{k}")
                for k, v in value.items()}
    raise TypeError(f"unsupported annotation {tp!r} for {key}")  # a bug in this schema


def build_config_section(cls: type, values: Any, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, validating keys, types and ranges; ``prefix`` is
    the dotted key of the mapping in the preset (for messages; "" at the top level)."""
    where = prefix or "top level"
    if values is None:
        values = {}
    if dataclasses.is_dataclass(values):
        return values
    if not isinstance(values, dict):
        raise ParamsError(f"{where}: expected a mapping, got {show(values)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ParamsError(
            f"unknown key {key!r}; allowed keys at {where}: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else name
        value = _coerce(value, hints[name], key)
        if (cls.__name__, name) in _NAME_FIELDS:
            check_name(value, key)
        lo, hi = fields[name].metadata.get("min"), fields[name].metadata.get("max")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                bounds = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
                raise ParamsError(f"{key}: {show(value)} is out of range; allowed {bounds}")
        kwargs[name] = value
    return cls(**kwargs)


def _check_consistency(cfg: StudyConfig) -> None:
    if cfg.augment.scale_min > cfg.augment.scale_max:
        raise ParamsError(
            f"augment.scale_min ({cfg.augment.scale_min}) must not exceed "
            f"augment.scale_max ({cfg.augment.scale_max})"
        )
    if not cfg.runs:
        raise ParamsError("runs: at least one run must be defined")
    for section, o in (("sgd", cfg.sgd), ("unet_sgd", cfg.unet_sgd)):
        if o.nesterov and o.momentum <= 0:
            raise ParamsError(f"{section}.nesterov: true needs {section}.momentum > 0 "
                              f"(got {o.momentum}); set a momentum or nesterov: false")
    if any(b < 1 for b in cfg.model.ppm_bins) or not cfg.model.ppm_bins:
        raise ParamsError(f"model.ppm_bins: {list(cfg.model.ppm_bins)} must be a non-empty "
                          "list of positive bin counts, e.g. [1, 2, 3, 6]")
    if (cfg.model.ppm_bin1_bn and 1 in cfg.model.ppm_bins and cfg.train.batch_size < 2
            and any(r.arch == "pspnet" for r in cfg.runs.values())):
        raise ParamsError(
            "model.ppm_bin1_bn: true puts BatchNorm on the 1x1 pyramid bin, which holds one value "
            f"per channel and image: train.batch_size ({cfg.train.batch_size}) must be at least 2"
            "; raise the batch size or set model.ppm_bin1_bn: false")
    run6 = cfg.claims.claim6_run
    if run6 not in cfg.runs or cfg.runs[run6].task != "voc" or cfg.runs[run6].arch != "pspnet":
        voc = [n for n, r in cfg.runs.items() if r.task == "voc" and r.arch == "pspnet"]
        if UNET_RUN in cfg.runs:  # only a preset with the U-Net baseline tests claim 6
            raise ParamsError(f"claims.claim6_run: {run6!r} is not a PSPNet VOC run of this "
                              f"preset; use one of {', '.join(voc) or '(none defined)'}")
    if (any(r.task == "voc" for r in cfg.runs.values())
            and cfg.data.n_train < cfg.train.batch_size):
        raise ParamsError(
            f"train.batch_size ({cfg.train.batch_size}) is larger than data.n_train "
            f"({cfg.data.n_train}): an epoch would have no full batch (the last partial batch "
            f"is dropped); use train.batch_size <= {cfg.data.n_train} or more training images")
    if not cfg.seeds:
        raise ParamsError("seeds: give at least one seed, e.g. seeds: [0, 1, 2]")
    if any(s < 0 or s > SEED_MAX for s in cfg.seeds) or len(set(cfg.seeds)) != len(cfg.seeds):
        raise ParamsError(
            f"seeds: {list(cfg.seeds)} must be distinct integers in [0, {SEED_MAX}]")


# ---------------------------------------------------------------- loading


def available_presets() -> list[str]:
    return sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))


def _preset_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_dir():
        if path.is_dir():
            raise ParamsError(f"parameter file {path} is a folder; give a preset name or a "
                              ".yaml file")
        if not path.is_file():
            raise ParamsError(f"parameter file {path} does not exist"
                              + ("" if not path.exists() else " as a regular file"))
        return path
    candidate = PARAMS_DIR / f"{name_or_path}.yaml"
    if not candidate.is_file():
        raise ParamsError(
            f"no preset {str(name_or_path)!r}: {candidate} does not exist; "
            f"available presets: {', '.join(available_presets())} (or pass a path to a .yaml file)"
        )
    return candidate


def _apply_override(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ParamsError(f"override {dotted!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["train.epochs=2", "sgd.lr=0.5"]`` -> ``{"train.epochs": 2, "sgd.lr": 0.5}``.

    The one override syntax of both command lines (``--set key=value``): the key is dotted, the
    value is read as YAML (``2`` int, ``0.5`` float, ``true`` bool, ``null``, ``[0, 1]`` list).
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ParamsError(f"--set expects key=value, got {show(item)}")
        try:
            out[key.strip()] = load_yaml_text(value, f"--set {show(item, 60)}")
        except ParamsError as err:
            raise ParamsError(str(err).replace(": not valid YAML", ": value is not valid YAML",
                                               1)) from None
    return out


def load_params(
    name_or_path: str | Path = "smoke",
    overrides: dict[str, Any] | None = None,
    **kw_overrides: Any,
) -> StudyConfig:
    """Read and validate a preset; ``overrides`` use dotted keys, keywords use ``__``.

    >>> cfg = load_params("smoke", {"train.epochs": 2}, seeds=[3])

    ``seeds: [0, 1, 2]`` trains every run once per seed. The old key ``seed: N`` (in a file or as
    an override) is read as ``seeds: [N]``; giving both ``seed`` and ``seeds`` in the same place
    is an error, and an override of either replaces the file's seeds.
    """
    path = _preset_path(name_or_path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(PRESET_MAX_BYTES + 1)
    except OSError as err:
        raise ParamsError(f"parameter file {path} cannot be read: {err.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ParamsError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); save the "
                          "preset as UTF-8") from None
    tree = load_yaml_text(text, str(path)) or {}
    if not isinstance(tree, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    tree.setdefault("name", path.stem)
    merged = dict(overrides or {})
    merged.update({k.replace("__", "."): v for k, v in kw_overrides.items()})
    try:  # the old single-seed key: ``seed: N`` reads as ``seeds: [N]``
        _seed_alias(tree, "in the file")
        _seed_alias(merged, "in the overrides")
    except ParamsError as err:
        raise ParamsError(f"{path}: {err}") from None
    if "seeds" in merged:  # an override replaces the file's seeds, whichever key set them
        tree.pop("seeds", None)
    for dotted, value in merged.items():
        _apply_override(tree, dotted, value)
    try:
        cfg = build_config_section(StudyConfig, tree)
        _check_consistency(cfg)
    except ParamsError as err:
        raise ParamsError(f"{path}: {err}") from None
    return cfg


def _seed_alias(tree: dict[str, Any], where: str) -> None:
    """``seed: N`` (the old key) -> ``seeds: [N]``; both at once is an error."""
    if "seed" not in tree:
        return
    if "seeds" in tree:
        raise ParamsError(f"both 'seed' and 'seeds' given {where}; use only seeds: [...]")
    seed = tree.pop("seed")
    tree["seeds"] = [seed] if not isinstance(seed, (list, tuple)) else seed


def resolve_run(cfg: StudyConfig, run: str, seed: int | None = None) -> RunConfig:
    """The flat :class:`RunConfig` of run ``run`` of preset ``cfg`` with seed ``seed`` (one of
    ``cfg.seeds``; ``None``: the first). The seed is hashed: each seed has its own run folder."""
    if run not in cfg.runs:
        raise ParamsError(f"no run {run!r} in preset {cfg.name!r}; runs: {', '.join(cfg.runs)}")
    if seed is None:
        seed = cfg.seeds[0]
    elif seed not in cfg.seeds:
        raise ParamsError(
            f"seed {seed!r} is not one of preset {cfg.name!r}'s seeds {list(cfg.seeds)}; "
            f"add it with --set 'seeds=[...]'"
        )
    spec = cfg.runs[run]
    leaf = spec.task == "leaf"
    return RunConfig(
        preset=cfg.name,
        run=run,
        task=spec.task,
        optimizer=spec.optimizer,
        regime=spec.regime,
        epochs=cfg.train.leaf_epochs if leaf else cfg.train.epochs,
        batch_size=cfg.train.batch_size,
        eval_batch_size=cfg.train.eval_batch_size,
        image_size=cfg.train.leaf_image_size if leaf else cfg.train.image_size,
        seed=int(seed),
        precision=resolve_precision(cfg.precision, cfg.device).name,
        channels_last=cfg.channels_last,
        device=cfg.device,
        quiet=cfg.quiet,
        data=cfg.data,
        model=cfg.model,
        augment=cfg.augment,
        optim=(cfg.adam if spec.optimizer == "adam"
               else cfg.unet_sgd if spec.arch == "unet" else cfg.sgd),
        runs_dir=cfg.runs_dir,
        arch=spec.arch,
        checkpoint_seconds=cfg.checkpoint_seconds,
    )


# Bump when the meaning of training changes in code (augmentation, loss, schedule, seeding), so
# runs trained by older code are not silently reused.
RECIPE_VERSION = 3

# Parameters that do not change what a run learns (loader workers give identical batches;
# evaluation batch size and the download flag do not touch training), or that belong to the
# other task. They are left out of the hash so that changing them reuses trained runs.
_NOT_TRAINING = {"data": ("num_workers", "download", "classes", "class_colors")}
# keys added after runs were stored: hashed only when set, so existing run folders keep their hash
_HASHED_WHEN_SET = {"data": {"heldout_images": "", "heldout_masks": ""},
                    "model": {"ppm_bin1_bn": False}}
_TASK_DATA_KEYS = {
    "voc": ("voc_source", "voc_root", "voc_image_set", "num_classes", "n_train", "n_heldout",
            "synthetic_voc_images", "folder_images", "folder_masks", "ignore_index",
            "heldout_images", "heldout_masks"),
    "leaf": ("leaf_source", "leaf_root", "leaf_heldout_fraction", "synthetic_leaf_images"),
}


def hashed_fields(run_cfg: RunConfig) -> dict[str, Any]:
    """What :func:`run_hash` covers: the run's config without ``NOT_HASHED``, the evaluation
    batch size, loader workers, the download flag, the class names and colours, the other task's
    data keys, the held-out folder pair when unset, and
    ``augment.cutmix_prob`` for runs that do not mix, ``model.ppm_bin1_bn`` when false; plus
    ``RECIPE_VERSION``."""
    plain = {k: v for k, v in run_cfg.to_dict().items()
             if k not in RunConfig.NOT_HASHED and k != "eval_batch_size"}
    other = "leaf" if run_cfg.task == "voc" else "voc"
    drop = set(_NOT_TRAINING["data"]) | set(_TASK_DATA_KEYS[other])
    unset = {k for k, default in _HASHED_WHEN_SET["data"].items()
             if plain["data"].get(k) == default}
    plain["data"] = {k: v for k, v in plain["data"].items() if k not in drop | unset}
    unset_model = {k for k, default in _HASHED_WHEN_SET["model"].items()
                   if plain["model"].get(k) == default}
    plain["model"] = {k: v for k, v in plain["model"].items() if k not in unset_model}
    if run_cfg.regime != "mix":
        plain["augment"] = {k: v for k, v in plain["augment"].items() if k != "cutmix_prob"}
    plain["recipe_version"] = RECIPE_VERSION
    return plain


def run_hash(run_cfg: RunConfig) -> str:
    """12 hex digits over everything that changes training (:func:`hashed_fields`)."""
    blob = json.dumps(hashed_fields(run_cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def dump_params(cfg: StudyConfig | RunConfig) -> str:
    """YAML text of a resolved config (what the run store writes as params.yaml)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def preset_hash(cfg: StudyConfig) -> str:
    """12 hex digits over the whole resolved preset (:func:`dump_params`): what claims.md and
    the figures' provenance name, so a reader can tell which settings made them."""
    return hashlib.sha256(dump_params(cfg).encode()).hexdigest()[:12]
