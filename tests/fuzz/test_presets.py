"""Fuzzing the preset loader (``config.load_params``) and the ``--set`` parser
(``config.parse_overrides``): generated YAML trees over the schema's own keys and stray ones,
generated ``KEY=VALUE`` items, and byte-level mutations of the shipped smoke preset. Each example
ends in a valid config (every run resolves) or a ParamsError naming the file or the key."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import yaml
from contract import assert_project_error
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import mutated

from pspnet_core import config
from pspnet_core.config import ParamsError, StudyConfig, load_params, parse_overrides, resolve_run
from pspnet_core.system.paths import PARAMS_DIR

SMOKE = (PARAMS_DIR / "smoke.yaml").read_bytes()


def _schema_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of the schema (``train.epochs``, ``data.n_train``, ...)."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += _schema_keys(tp, f"{prefix}{f.name}.")
        else:
            out.append(prefix + f.name)
    return out


KEYS = _schema_keys(StudyConfig)
SECTIONS = sorted({k.split(".")[0] for k in KEYS if "." in k})

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.integers(),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["auto", "fp32", "bf16", "sgd", "adam", "mix", "none", "voc", "leaf", "1.x",
                     "paper", "pspnet", ".", "..", "a/b", "imagenet", "", "nan", "1e400"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8)
key_names = st.one_of(st.sampled_from(KEYS), st.text(min_size=1, max_size=12))


def _tree(items: list[tuple[str, object]]) -> dict:
    """A nested YAML tree from dotted keys (a later key may replace an earlier section)."""
    tree: dict = {}
    for dotted, value in items:
        node = tree
        *parents, last = dotted.split(".")
        for part in parents:
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                nxt = node[part] = {}
            node = nxt
        node[last] = value
    return tree


def _check_valid(cfg: StudyConfig) -> None:
    """A config the loader accepted is usable: every run of every seed resolves and hashes."""
    for run in cfg.runs:
        for seed in cfg.seeds:
            config.run_hash(resolve_run(cfg, run, seed))


def _load(path: Path, overrides: dict | None = None) -> None:
    try:
        cfg = load_params(path, overrides)
    except ParamsError as err:
        assert_project_error(err, str(path))
        return
    _check_valid(cfg)


@given(items=st.lists(st.tuples(key_names, values), max_size=8))
@example(items=[("train", {"epochs": 2}), ("train.batch_size", 2)])
@example(items=[("name", ".")])
@example(items=[("train.batch_size", 10**6)])
@example(items=[("seeds", [])])
def test_generated_trees_load_or_name_the_file(tmp_path_factory, items):
    path = tmp_path_factory.mktemp("preset") / "fuzzed.yaml"
    try:
        text = yaml.safe_dump(_tree(items), allow_unicode=True)
    except (yaml.YAMLError, RecursionError):
        return
    path.write_text(text, encoding="utf-8")
    _load(path)


@given(data=mutated(SMOKE))
@example(data=b"train:\n  epochs: 99\n" + SMOKE)  # a section given twice
@example(data=b"\xff\xfe" + SMOKE)                  # not UTF-8
@example(data=b"&a [*a]\n" + SMOKE[8:])              # an alias
def test_mutated_smoke_bytes_load_or_name_the_file(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("preset") / "smoke.yaml"
    path.write_bytes(data)
    _load(path)


set_items = st.tuples(key_names, values).map(
    lambda kv: f"{kv[0]}={yaml.safe_dump(kv[1], default_flow_style=True).strip()}")


@given(items=st.lists(st.one_of(set_items, st.text(max_size=30)), min_size=1, max_size=4))
@example(items=["seed=1", "seeds=[2]"])
@example(items=["=1"])
@example(items=["train.epochs"])
def test_set_items_parse_and_apply_or_name_the_item(items):
    try:
        overrides = parse_overrides(items)
    except ParamsError as err:
        assert_project_error(err, *items, "KEY=VALUE", "--set")
        return
    smoke = PARAMS_DIR / "smoke.yaml"
    try:
        cfg = load_params(smoke, overrides)
    except ParamsError as err:
        assert_project_error(err, str(smoke))
        return
    _check_valid(cfg)
