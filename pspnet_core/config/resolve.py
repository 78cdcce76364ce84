"""One training run of a preset: its flat RunConfig (:func:`resolve_run`), what its hash covers
(``HASH_COVERAGE``), the run hash and the preset hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import yaml

from pspnet_core.config.errors import ParamsError
from pspnet_core.config.schema import RunConfig, StudyConfig
from pspnet_core.system.precision import resolve_precision


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
        clean_images=cfg.train.clean_images,
        seed=int(seed),
        precision=resolve_precision(cfg.precision, cfg.device).name,
        channels_last=cfg.channels_last,
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

@dataclass(frozen=True)
class HashCoverage:
    """What :func:`run_hash` covers, declared in one place: every field of the run's
    :class:`RunConfig` (its sections as nested mappings), less the keys named here, plus
    ``RECIPE_VERSION`` (as ``recipe_version``). Parameters that do not change what a run learns
    (loader workers give identical batches; the evaluation batch size and the download flag do
    not touch training), or that belong to the other task, are left out so that changing them
    reuses trained runs. Changing a table here changes the hashes of stored runs: they would be
    trained again."""

    # RunConfig fields never hashed: where and how a run is shown and stored, not what it learns
    # (the device, rank, world size and quiet flag are not RunConfig fields at all: they are the
    # process's train.runtime.Runtime)
    not_hashed: tuple[str, ...]
    # section -> keys that do not change what a run learns
    not_training: dict[str, tuple[str, ...]]
    # task -> its data keys: the other task's data keys are left out
    task_data: dict[str, tuple[str, ...]]
    # section -> {key: value}: keys added after runs were stored, hashed only when set (not
    # equal to that value), so existing run folders keep their hash
    hashed_when_set: dict[str, dict[str, Any]]
    # section -> keys hashed only for runs of regime "mix" (the mixing draws nothing otherwise)
    mix_only: dict[str, tuple[str, ...]]


HASH_COVERAGE = HashCoverage(
    not_hashed=("preset", "runs_dir", "checkpoint_seconds", "eval_batch_size"),
    not_training={"data": ("num_workers", "download", "classes", "class_colors")},
    task_data={
        "voc": ("voc_source", "voc_root", "voc_image_set", "num_classes", "n_train",
                "n_heldout", "synthetic_voc_images", "folder_images", "folder_masks",
                "ignore_index", "heldout_images", "heldout_masks"),
        "leaf": ("leaf_source", "leaf_root", "leaf_heldout_fraction", "synthetic_leaf_images"),
    },
    hashed_when_set={"data": {"heldout_images": "", "heldout_masks": ""},
                     "model": {"ppm_bin1_bn": False}},
    mix_only={"augment": ("cutmix_prob",)},
)


def hashed_fields(run_cfg: RunConfig) -> dict[str, Any]:
    """What :func:`run_hash` covers (``HASH_COVERAGE``): the run's config without
    ``not_hashed`` (the evaluation batch size among them), loader workers, the download flag,
    the class names and colours, the other task's data keys, the held-out folder pair when
    unset, and ``augment.cutmix_prob`` for runs that do not mix, ``model.ppm_bin1_bn`` when
    false; plus ``RECIPE_VERSION``."""
    cov = HASH_COVERAGE
    plain = {k: v for k, v in run_cfg.to_dict().items() if k not in cov.not_hashed}
    other = "leaf" if run_cfg.task == "voc" else "voc"
    drop: dict[str, set[str]] = {section: set(keys) for section, keys in cov.not_training.items()}
    drop.setdefault("data", set()).update(cov.task_data[other])
    for section, unset in cov.hashed_when_set.items():
        drop.setdefault(section, set()).update(
            k for k, value in unset.items() if plain[section].get(k) == value)
    if run_cfg.regime != "mix":
        for section, keys in cov.mix_only.items():
            drop.setdefault(section, set()).update(keys)
    for section, keys in drop.items():
        plain[section] = {k: v for k, v in plain[section].items() if k not in keys}
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
