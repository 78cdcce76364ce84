"""The notebook contract, in one table: each notebook's parameters, whether it reads trained
runs, its variants, and which figures a preset's runs support.

The study plans from it (variants, which notebooks need the training phase, where a ``--param``
goes), ``notebook.setup`` validates every notebook's parameters with it (whatever set them: the
parameters cell, papermill ``-p``/``-y``, ``pspnet-study --param``), and the study checks that
each notebook's ``parameters`` cell declares exactly the names listed here. No torch here: the
study CLI asks before any kernel starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pspnet_core.config import LEAF_RUN, SGD_MIX, StudyConfig, show

COMMON = ("preset", "overrides")  # every notebook's first two parameters


@dataclass(frozen=True)
class Contract:
    """What one notebook takes and needs."""

    parameters: tuple[str, ...] = ()  # its own, after ``preset`` and ``overrides``
    reads_runs: bool = False  # reads trained runs (the study trains them first)
    variants: tuple[tuple[str, dict[str, Any]], ...] = ()  # (suffix, parameters) per run
    default_run: str | None = None  # the run its figures show when ``run_name`` is not given


NOTEBOOKS: dict[str, Contract] = {
    "01_architecture": Contract(),
    "02_augmentation": Contract(("n_show",)),
    "03_learning_curves": Contract(("optimizer",), reads_runs=True,
                                   variants=(("sgd", {"optimizer": "sgd"}),
                                             ("adam", {"optimizer": "adam"}))),
    "04_error_galleries": Contract(("run_name", "seed"), reads_runs=True, default_run=SGD_MIX),
    "05_leaf_disease": Contract(("run_name", "seed", "leaf_index"), reads_runs=True,
                                default_run=LEAF_RUN),
    "06_claims": Contract(reads_runs=True),
    "07_explore": Contract(("run_name", "compare_with", "seed", "split"), reads_runs=True,
                           default_run=SGD_MIX),
}
OPTIMIZERS = ("sgd", "adam")
SPLITS = ("heldout", "train")


class ParameterError(ValueError):
    """A notebook parameter is unknown or invalid; the message names it and what is valid."""


def contract(notebook: str) -> Contract:
    """The contract of notebook ``notebook`` (its stem); an own notebook takes only the
    common parameters."""
    return NOTEBOOKS.get(notebook, Contract())


def parameter_names(notebook: str) -> tuple[str, ...]:
    return COMMON + contract(notebook).parameters


def _bad(key: str, value: Any, why: str) -> ParameterError:
    return ParameterError(f"notebook parameter {key}: {show(value)} {why}")


def check_names(notebook: str, names: set[str] | list[str], source: str) -> None:
    """Every name in ``names`` is a parameter of ``notebook``; else :class:`ParameterError`
    naming it, where it came from (``source``) and the valid ones."""
    valid = parameter_names(notebook)
    unknown = sorted(set(names) - set(valid))
    if unknown:
        raise ParameterError(f"unknown notebook parameter {unknown[0]!r} ({source}); "
                             f"{notebook}'s parameters: {', '.join(valid)}")


def check_parameters(cfg: StudyConfig, **parameters: Any) -> None:
    """Validate notebook parameters against the preset; :class:`ParameterError` naming the
    first bad one and what would be valid."""
    for key, value in parameters.items():
        if key == "optimizer":
            if value not in OPTIMIZERS:
                raise _bad(key, value, f"is not allowed; use one of {', '.join(OPTIMIZERS)}")
            why = missing_runs(cfg, "03_learning_curves", {"optimizer": value})
            if why:
                raise ParameterError(why)
        elif key in ("run_name", "compare_with"):
            if value is not None and (not isinstance(value, str) or value not in cfg.runs):
                raise _bad(key, value, f"is not a run of preset {cfg.name!r}; runs: "
                           f"{', '.join(cfg.runs)}")
        elif key == "seed":
            if value is not None and (isinstance(value, bool) or value not in cfg.seeds):
                raise _bad(key, value, f"is not one of the seeds {list(cfg.seeds)} of preset "
                           f"{cfg.name!r} (None: the notebook's default)")
        elif key == "split":
            if value not in SPLITS:
                raise _bad(key, value, f"is not allowed; use one of {', '.join(SPLITS)}")
        elif key in ("n_show", "leaf_index"):
            low = 1 if key == "n_show" else 0
            if value is None and key == "leaf_index":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise _bad(key, value, f"must be an integer >= {low}")
        else:
            known = sorted({p for c in NOTEBOOKS.values() for p in c.parameters})
            raise ParameterError(f"unknown notebook parameter {key!r}; known: "
                                 f"{', '.join(known)}")
    first, second = parameters.get("run_name"), parameters.get("compare_with")
    if first is not None and second is not None and cfg.runs[first].task != cfg.runs[second].task:
        raise _bad("compare_with", second, f"is a {cfg.runs[second].task} run and run_name "
                   f"{first!r} a {cfg.runs[first].task} run; compare runs of one task")


def missing_runs(cfg: StudyConfig, notebook: str, parameters: dict[str, Any]) -> str | None:
    """Why notebook ``notebook`` (its stem, e.g. ``"03_learning_curves"``) can draw none of its
    figures with preset ``cfg`` and these parameters, or None when it can.

    A preset names the runs it trains (``runs:``); the study skips a notebook whose figures
    need a run the preset does not train, and the notebook itself stops with this sentence.
    01 (architecture), 06 (claims: each claim says which runs it lacks) and 07 (the explorer:
    any run) always run.
    """
    voc = [n for n, spec in cfg.runs.items() if spec.task == "voc" and spec.arch == "pspnet"]
    if notebook == "02_augmentation" and not voc:
        return (f"preset {cfg.name!r} trains no PSPNet run on the segmentation task (runs: "
                f"{', '.join(cfg.runs)}); Figs. 2-4 show that task's augmentation")
    if notebook == "03_learning_curves":
        optimizer = parameters.get("optimizer", "sgd")
        if not any(spec.task == "voc" and spec.optimizer == optimizer
                   for spec in cfg.runs.values()):
            figure = "Fig. 5" if optimizer == "sgd" else "Fig. 10"
            return (f"preset {cfg.name!r} trains no {optimizer} run on the segmentation task "
                    f"(runs: {', '.join(cfg.runs)}); {figure} needs one")
    if notebook == "05_leaf_disease" and not any(s.task == "leaf" for s in cfg.runs.values()):
        return (f"preset {cfg.name!r} trains no leaf run (runs: {', '.join(cfg.runs)}); "
                "Figs. 11-15 need one")
    if notebook in ("04_error_galleries", "05_leaf_disease"):
        run = parameters.get("run_name") or contract(notebook).default_run
        figures = "Figs. 6-9" if notebook == "04_error_galleries" else "Figs. 11-15"
        if run not in cfg.runs:
            return (f"preset {cfg.name!r} has no run {run!r} (runs: {', '.join(cfg.runs)}); "
                    f"{figures} show it: pass another with run_name (pspnet-study --param "
                    f"run_name=NAME)")
        if notebook == "05_leaf_disease" and cfg.runs[run].task != "leaf":
            return f"run {run!r} of preset {cfg.name!r} is not a leaf run; {figures} need one"
    return None


def explorer_runs(cfg: StudyConfig, run_name: str | None,
                  compare_with: str | None) -> tuple[str, str]:
    """The two runs notebook 07 opens with. A given name is kept (``check_parameters`` has
    validated it); None picks: ``sgd_mix`` when the preset trains it, else its first
    segmentation run (else its first run); then another run of the same task (the same run,
    compared across seeds, when the task has one run)."""
    if run_name is None:
        voc = [n for n, spec in cfg.runs.items() if spec.task == "voc"] or list(cfg.runs)
        run_name = SGD_MIX if SGD_MIX in voc else voc[0]
    if compare_with is None:
        same_task = [n for n in cfg.runs if cfg.runs[n].task == cfg.runs[run_name].task]
        compare_with = next((n for n in same_task if n != run_name), run_name)
    return run_name, compare_with
