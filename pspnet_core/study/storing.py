"""Storing a study's executed notebooks over ``notebooks/*.ipynb``: what nbval compares
against and what a reader sees on the repository page (``pspnet-study --store``,
``make notebooks``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pspnet_core.study.execute import StudyResult
from pspnet_core.system.atomic import atomic_write_text
from pspnet_core.system.paths import NOTEBOOKS_DIR

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def clean_executed(nb: Any) -> Any:
    """An executed notebook made fit to store in the repository (in place; returned):

    - papermill's injected-parameters cell is dropped (the stored notebook runs with the
      defaults of its own ``parameters`` cell, which the study passed unchanged);
    - widget outputs (tqdm's bars in a kernel with ipywidgets) and the widget state in the
      notebook metadata are dropped: they carry no result and would bloat the file;
    - papermill's absolute input/output paths become the notebook's file name.
    """
    nb.cells = [c for c in nb.cells
                if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            cell.outputs = [o for o in cell.get("outputs", [])
                            if WIDGET_MIME not in o.get("data", {})]
    nb.metadata.pop("widgets", None)
    pm_meta = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if pm_meta.get(key):
            pm_meta[key] = Path(str(pm_meta[key])).name
    pm_meta.pop("parameters", None)
    return nb


def store_notebooks(result: StudyResult, notebooks_dir: str | Path = NOTEBOOKS_DIR,
                    log: Callable[[str], None] = print) -> list[Path]:
    """Copy each notebook's executed version (the first variant of a notebook that runs in
    several) over its source in ``notebooks_dir``, cleaned by :func:`clean_executed`: what nbval
    compares against and what a reader sees on the repository page."""
    import nbformat

    stored, seen = [], set()
    for r in result.results:
        source = r.job.notebook
        if r.status != "ok" or r.output is None or source.name in seen:
            continue
        seen.add(source.name)
        nb = clean_executed(nbformat.read(r.output, as_version=4))
        target = Path(notebooks_dir) / source.name
        atomic_write_text(target, nbformat.writes(nb) + "\n")
        stored.append(target)
        log(f"stored {r.output.name} -> {target.name}")
    return stored
