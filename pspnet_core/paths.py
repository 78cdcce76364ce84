"""Where the project's folders are: params/, data/, runs/, figures/, outputs/.

Relative paths in a preset are resolved against the project root (the folder holding
``pyproject.toml`` and ``params/``), so notebooks executed from ``notebooks/`` and the CLI run
from anywhere agree. ``PSPNET_HOME`` overrides the root (tests point it at a temporary folder).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SOURCE_ROOT = PACKAGE_DIR.parent
PARAMS_DIR = SOURCE_ROOT / "params"
NOTEBOOKS_DIR = SOURCE_ROOT / "notebooks"


def project_root() -> Path:
    """The folder that relative data/, runs/, figures/ and outputs/ paths hang from."""
    return Path(os.environ.get("PSPNET_HOME", SOURCE_ROOT)).resolve()


def resolve(path: str | Path) -> Path:
    """``path`` if absolute, else ``project_root() / path``."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p
