"""A tiny preset for the engine / run-store / CLI tests (65 px, 4 train / 2 held-out images,
3 epochs of 2 steps of batch 2).

``write_tiny(home)`` writes ``home/tiny.yaml`` whose data and runs folders are absolute paths
inside ``home`` (so nothing depends on the working directory or PSPNET_HOME).
The session fixture ``reference_run`` (tests/conftest.py) trains the ``sgd_mix`` run once and is
shared by test_runs.py, test_engine.py and test_train_cli.py (the uninterrupted run others compare
to). ``history_equal`` compares two run histories ignoring timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "name": "tiny",
    "seeds": [0],
    "device": "cpu",
    "precision": "fp32",
    "quiet": True,
    "data": {
        "n_train": 4,
        "n_heldout": 2,
        "synthetic_voc_images": 8,
        "synthetic_leaf_images": 10,
        "synthetic_size": 64,
        "leaf_heldout_fraction": 0.2,
    },
    # stride 32 (the listing's plain ResNet50): a third of the dilated step; the dilated path
    # is tested at its own sizes (tests/test_model.py) and in make paper-dry
    "model": {"weights": None, "freeze_backbone": False, "output_stride": 32},
    "train": {
        "epochs": 3,
        "batch_size": 2,
        "eval_batch_size": 2,
        "image_size": 65,
        "leaf_epochs": 2,
        "leaf_image_size": 65,
    },
    "runs": {
        "sgd_mix": {"task": "voc", "optimizer": "sgd", "regime": "mix"},
        "adam_none": {"task": "voc", "optimizer": "adam", "regime": "none"},
        "leaf_sgd_affine": {"task": "leaf", "optimizer": "sgd", "regime": "affine"},
    },
}


def write_tiny(home: Path, data_root: Path | None = None, name: str = "tiny.yaml", **sections):
    """Write the tiny preset into ``home``; sections are merged one level deep."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    tree = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    tree["data"]["root"] = str(data_root or home / "data")
    tree["runs_dir"] = str(home / "runs")
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(tree.get(key), dict):
            tree[key].update(value)
        else:
            tree[key] = value
    path = home / name
    path.write_text(yaml.safe_dump(tree))
    return path


def subprocess_env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PSPNET_HOME"] = str(home)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PSPNET_STOP_AFTER_EPOCH", None)
    env.update(extra)
    return env


def train_cli(home: Path, params: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pspnet_core.train", "--params", str(params), *args],
        cwd=home, env=subprocess_env(home, **env), capture_output=True, text=True, timeout=600,
    )


def history_equal(a: pd.DataFrame, b: pd.DataFrame, ignore=("seconds",)) -> bool:
    """Same columns in the same order, and every column but timing exactly equal."""
    cols = [c for c in a.columns if c not in ignore]
    return list(a.columns) == list(b.columns) and a[cols].equals(b[cols])
