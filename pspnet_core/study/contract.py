"""Which notebooks, and so which figures, a preset's runs support.

A preset trains the runs its ``runs:`` section names. The study (``study.run_study``) skips a
notebook whose figures need a run the preset does not train, and the notebook itself stops with
the same sentence (``notebook.setup`` / ``notebook.augmentation_run``). No torch here: the study
CLI asks before any kernel starts.
"""

from __future__ import annotations

from typing import Any

from pspnet_core.config import LEAF_RUN, SGD_MIX, StudyConfig

# the notebooks' own run_name defaults (their ``parameters`` cells say the same)
DEFAULT_RUN = {"04_error_galleries": SGD_MIX, "05_leaf_disease": LEAF_RUN}


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
    if notebook in DEFAULT_RUN:
        run = parameters.get("run_name") or DEFAULT_RUN[notebook]
        figures = "Figs. 6-9" if notebook == "04_error_galleries" else "Figs. 11-15"
        if run not in cfg.runs:
            return (f"preset {cfg.name!r} has no run {run!r} (runs: {', '.join(cfg.runs)}); "
                    f"{figures} show it: pass another with run_name (pspnet-study --param "
                    f"run_name=NAME)")
        if notebook == "05_leaf_disease" and cfg.runs[run].task != "leaf":
            return f"run {run!r} of preset {cfg.name!r} is not a leaf run; {figures} need one"
    return None
