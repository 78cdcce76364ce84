"""What a study runs: the notebooks in filename order, their variants and parameters, from the
notebook contract (:mod:`pspnet_core.study.contract`)."""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pspnet_core.config import ParamsError, load_params
from pspnet_core.study.contract import contract, parameter_names
from pspnet_core.system.paths import NOTEBOOKS_DIR, resolve


class StudyError(RuntimeError):
    """The study could not start (bad preset, no notebooks, no kernel, a bad ``--param``)."""


@dataclass(frozen=True)
class Job:
    """One notebook execution: source notebook, output stem, extra parameters."""

    notebook: Path
    name: str  # output stem, e.g. "03_learning_curves-sgd"
    parameters: dict[str, Any] = field(default_factory=dict)


def _split_only(only: str | Iterable[str] | None) -> list[str]:
    if only is None:
        return []
    items = [only] if isinstance(only, str) else list(only)
    return [p.strip() for item in items for p in str(item).split(",") if p.strip()]


def plan(notebooks_dir: str | Path = NOTEBOOKS_DIR, only: str | Iterable[str] | None = None):
    """The jobs to run, in filename order; ``only`` keeps notebooks whose filename starts with
    one of the given prefixes (``"03"``, ``"03_learning"``; repeatable or comma-separated)."""
    nb_dir = Path(notebooks_dir)
    notebooks = sorted(p for p in nb_dir.glob("[0-9][0-9]_*.ipynb") if p.is_file())
    if not notebooks:
        raise StudyError(f"no notebooks NN_*.ipynb in {nb_dir}")
    prefixes = _split_only(only)
    if prefixes:
        chosen = [p for p in notebooks if any(p.name.startswith(x) for x in prefixes)]
        if not chosen:
            raise StudyError(
                f"--only {','.join(prefixes)} matches no notebook; available: "
                + ", ".join(p.name for p in notebooks)
            )
        notebooks = chosen
    jobs = []
    for nb in notebooks:
        check_declared(nb)
        for suffix, extra in contract(nb.stem).variants or (("", {}),):
            jobs.append(Job(nb, f"{nb.stem}-{suffix}" if suffix else nb.stem, dict(extra)))
    return jobs


def declared_parameters(notebook: str | Path) -> list[str]:
    """Names assigned at the top level of a notebook's cell tagged ``parameters``."""
    nb = json.loads(Path(notebook).read_text())
    for cell in nb.get("cells", []):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            tree = ast.parse("".join(cell.get("source", "")))
            return [t.id for node in tree.body if isinstance(node, ast.Assign)
                    for t in node.targets if isinstance(t, ast.Name)]
    return []


def check_declared(notebook: Path) -> None:
    """The notebook's ``parameters`` cell declares exactly the contract's names, in order;
    :class:`StudyError` naming both lists otherwise (the table and the notebook drifted)."""
    declared = declared_parameters(notebook)
    expected = list(parameter_names(notebook.stem))
    if declared != expected:
        raise StudyError(f"{notebook}: its parameters cell declares {', '.join(declared)}; the "
                         f"notebook contract (study/contract.py) says {', '.join(expected)}")


def notebook_parameters(jobs: Sequence[Job], values: dict[str, Any] | None) -> dict[str, dict]:
    """``{job name: parameters}``: each ``--param`` value goes to the notebooks whose
    ``parameters`` cell declares it (a variant's own parameters win, e.g. 03's ``optimizer``).
    A name no planned notebook declares is an error listing the ones that exist."""
    values = dict(values or {})
    reserved = {"preset", "overrides"} & set(values)
    if reserved:
        raise StudyError(f"--param {sorted(reserved)[0]}: use --params / --set for the preset "
                         "and its overrides")
    declared = {job.name: set(parameter_names(job.notebook.stem)) for job in jobs}
    known = set().union(*declared.values()) if declared else set()
    unknown = sorted(set(values) - known)
    if unknown:
        raise StudyError(
            f"--param {unknown[0]}: no notebook in this study declares it; notebook parameters: "
            + ", ".join(sorted(known - {"preset", "overrides"})))
    return {job.name: {k: v for k, v in values.items() if k in declared[job.name]}
            for job in jobs}



def preset_of(
    preset: str | os.PathLike, overrides: dict[str, Any] | None = None
) -> tuple[str, str, Path]:
    """(name, value for the notebooks' ``preset`` parameter, figures dir) of a preset with the
    notebooks' ``overrides`` applied (they may move ``figures_dir`` or rename the preset)."""
    raw = str(preset)
    is_path = Path(raw).suffix in (".yaml", ".yml") or os.sep in raw
    value = str(Path(raw).resolve()) if is_path else raw  # notebooks run in notebooks/
    try:
        cfg = load_params(value, overrides)
    except ParamsError as err:
        raise StudyError(str(err)) from None
    return cfg.name, value, resolve(cfg.figures_dir) / cfg.name
