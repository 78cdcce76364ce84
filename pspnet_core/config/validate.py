"""The hand-written validator: every key, type, range and name of a preset checked before
anything runs (:func:`build_config_section`), and the checks across sections."""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Any, Literal

from pspnet_core.config.errors import ParamsError, show
from pspnet_core.config.schema import SEED_MAX, UNET_RUN, StudyConfig

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")
# (dataclass, field) pairs whose string value is a name used in folder and file names
_NAME_FIELDS = {("StudyConfig", "name"), ("RunConfig", "run"), ("RunConfig", "preset")}


NAME_MAX = 100  # a run folder is <run>-s<seed>-<hash>: file names stop at 255 bytes



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
