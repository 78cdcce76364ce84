"""Reading presets: bounded YAML without aliases or duplicate keys, preset names and paths,
overrides (``--set key=value``) and :func:`load_params`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pspnet_core.config.errors import ParamsError, show
from pspnet_core.config.schema import StudyConfig
from pspnet_core.config.validate import _check_consistency, build_config_section
from pspnet_core.system.paths import PARAMS_DIR

PRESET_MAX_BYTES = 1 << 20  # a preset is a few KB; never parse more


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
