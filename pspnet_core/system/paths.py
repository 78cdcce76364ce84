"""Where the project's folders are: params/, data/, runs/, figures/, outputs/.

Relative paths in a preset are resolved against the project root (the folder holding
``pyproject.toml`` and ``params/``), so notebooks executed from ``notebooks/`` and the CLI run
from anywhere agree. ``PSPNET_HOME`` overrides the root (tests point it at a temporary folder).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # pspnet_core/ (this file: system/paths.py)
SOURCE_ROOT = PACKAGE_DIR.parent
PARAMS_DIR = SOURCE_ROOT / "params"
NOTEBOOKS_DIR = SOURCE_ROOT / "notebooks"


class HomeError(ValueError):
    """``PSPNET_HOME`` is set but names no usable folder (bad input: exit 2)."""


def project_root() -> Path:
    """The folder that relative data/, runs/, figures/ and outputs/ paths hang from:
    ``PSPNET_HOME`` when set (it must not be empty nor name a file), else the source root."""
    home = os.environ.get("PSPNET_HOME")
    if home is None:
        return SOURCE_ROOT
    if not home.strip():
        raise HomeError("PSPNET_HOME is set to an empty string; unset it (the project folder "
                        "is used) or set it to a folder")
    root = Path(home).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise HomeError(f"PSPNET_HOME={home} is a file, not a folder; set it to a folder "
                        "(it is created when missing)")
    return root


def resolve(path: str | Path) -> Path:
    """``path`` if absolute, else ``project_root() / path``."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p
