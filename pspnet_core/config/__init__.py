"""One validated schema for every parameter of the study (docs/architecture.md).

``load_params("smoke")`` reads ``params/smoke.yaml``; ``load_params(path)`` reads any YAML file.
Overrides are dotted keys (``{"train.epochs": 3}``) or keywords with ``__`` for the dot
(``train__epochs=3``); both command lines read them as ``--set key=value`` through
:func:`parse_overrides`. Every key, type and range is checked before anything runs: an error names
the key and says what is allowed.

``resolve_run(cfg, "sgd_mix")`` flattens the preset into the :class:`RunConfig` of one training
run; its :func:`run_hash` covers everything that changes training. The device and the progress
output are not in it: they are the training process's ``train.runtime.Runtime``.

The package, by job: :mod:`~pspnet_core.config.schema` (the dataclasses and their field docs),
:mod:`~pspnet_core.config.validate` (the validator), :mod:`~pspnet_core.config.load` (YAML,
presets, overrides), :mod:`~pspnet_core.config.resolve` (one run's RunConfig, what its hash
covers, the hashes) and :mod:`~pspnet_core.config.errors`. The names below are its public API.
"""

from pspnet_core.config.errors import (
    VALUE_SHOWN,
    ParamsError,
    show,
)
from pspnet_core.config.load import (
    PRESET_MAX_BYTES,
    available_presets,
    load_params,
    load_yaml_text,
    parse_overrides,
)
from pspnet_core.config.resolve import (
    HASH_COVERAGE,
    RECIPE_VERSION,
    HashCoverage,
    dump_params,
    hashed_fields,
    preset_hash,
    resolve_run,
    run_hash,
)
from pspnet_core.config.schema import (
    ADAM_AFFINE,
    ADAM_MIX,
    COUNT_MAX,
    DEFAULT_RUNS,
    LEAF_RUN,
    SEED_MAX,
    SGD_AFFINE,
    SGD_MIX,
    SGD_NONE,
    UNET_RUN,
    UNET_SGD,
    AdamConfig,
    AugmentConfig,
    ClaimsConfig,
    DataConfig,
    GalleryConfig,
    ModelConfig,
    RunConfig,
    RunSpec,
    SGDConfig,
    StudyConfig,
    TrainConfig,
    to_plain,
)
from pspnet_core.config.validate import (
    NAME_MAX,
    NAME_PATTERN,
    build_config_section,
    check_name,
)

__all__ = [
    "ADAM_AFFINE",
    "ADAM_MIX",
    "AdamConfig",
    "AugmentConfig",
    "COUNT_MAX",
    "ClaimsConfig",
    "DEFAULT_RUNS",
    "DataConfig",
    "GalleryConfig",
    "HASH_COVERAGE",
    "HashCoverage",
    "LEAF_RUN",
    "ModelConfig",
    "NAME_MAX",
    "NAME_PATTERN",
    "PRESET_MAX_BYTES",
    "ParamsError",
    "RECIPE_VERSION",
    "RunConfig",
    "RunSpec",
    "SEED_MAX",
    "SGDConfig",
    "SGD_AFFINE",
    "SGD_MIX",
    "SGD_NONE",
    "StudyConfig",
    "TrainConfig",
    "UNET_RUN",
    "UNET_SGD",
    "VALUE_SHOWN",
    "available_presets",
    "build_config_section",
    "check_name",
    "dump_params",
    "hashed_fields",
    "load_params",
    "load_yaml_text",
    "parse_overrides",
    "preset_hash",
    "resolve_run",
    "run_hash",
    "show",
    "to_plain",
]
