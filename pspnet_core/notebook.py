"""The notebooks' first cell: one call that loads the preset and says where figures go.

Every notebook starts with::

    from pspnet_core.notebook import setup
    cfg, fig_dir = setup(preset, overrides)

``preset`` and ``overrides`` come from the notebook's ``parameters`` cell (papermill injects the
study's values there). The figure folder is ``<figures_dir>/<preset name>``; ``figures_dir`` may
be relative (to the project root, docs/architecture.md) or absolute.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pspnet_core import paths
from pspnet_core.config import StudyConfig, load_params


def figure_dir(cfg: StudyConfig) -> Path:
    """``<figures_dir>/<name>`` of a preset, resolved against the project root."""
    return paths.resolve(cfg.figures_dir) / cfg.name


def display_path(path: Path) -> str:
    """``path`` relative to the project root when it lies inside it, else as given: stored
    notebook outputs never carry a machine's absolute path for project files."""
    root = paths.project_root()
    try:
        return Path(path).resolve().relative_to(root).as_posix()
    except ValueError:
        return os.fspath(path)


def setup(
    preset: str | os.PathLike = "smoke",
    overrides: dict[str, Any] | None = None,
    announce: bool = True,
) -> tuple[StudyConfig, Path]:
    """(validated config, figure folder) of ``preset`` with ``overrides`` applied; prints one
    line naming the preset and the figure folder unless ``announce`` is false."""
    cfg = load_params(preset, overrides or None)
    fig_dir = figure_dir(cfg)
    if announce:
        print(f"preset {cfg.name!r}: figures go to {display_path(fig_dir)}")
    return cfg, fig_dir
