"""Where a figure comes from (docs/architecture.md#provenance): the preset and its hash, the
(run, seed, run hash) it read, the package versions and the machine kind.

``plots.save_figure(..., provenance=figure_record(cfg, runs))`` writes the record into the PNG
as a text chunk (no commit, no date: a rerun with the same inputs gives the same bytes) and
into ``<figure dir>/provenance.json`` under the figure's name. The study adds, per figure, the
notebook that wrote it and the code (:func:`code_commit`): the last commit that changed
``pspnet_core/``, ``params/`` or the lock, and a hash of the notebooks' code cells (their stored
outputs change with every regeneration; their code is what matters), so committing regenerated
figures and notebooks does not change it.

A run folder's ``env.json`` (:func:`environment`, written by ``runs.start_run``) records the
same package versions (``PACKAGES``) and the same code commit (:func:`code_commit`).
"""

from __future__ import annotations

import hashlib
import json
import platform
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from pspnet_core.config import RunConfig, run_hash
from pspnet_core.config import preset_hash as hash_of
from pspnet_core.system import paths, precision
from pspnet_core.system.atomic import atomic_write_text

FILE = "provenance.json"
PNG_KEY = "pspnet:provenance"  # the PNG text chunk
# what a figure's pixels can depend on (the lock pins the rest; these are read back)
PACKAGES = ("torch", "torchvision", "albumentations", "numpy", "scipy", "pandas", "matplotlib",
            "pillow", "opencv-python-headless", "pyyaml")
CODE_PATHS = ("pspnet_core", "params", "requirements.lock")


def package_version(pkg: str) -> str | None:
    """The installed version of ``pkg``, or None (also what the run store's env.json records)."""
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, str]:
    """The CPU model, the vector level torch's kernels use (``AVX512``, ``AVX2``; fp32 results
    differ between levels) and how it computes bf16 (``amx``, ``avx512_bf16`` or ``none``: bf16
    results differ between these), so a rerun is byte-identical only on the same kind."""
    bf16 = precision.cpu_bf16_kind()
    isa = {"AMX": "amx", "AVX-512 BF16": "avx512_bf16"}.get(bf16 or "", "none")
    return {"cpu": precision.cpu_model(), "isa": isa, "kernels": precision.kernel_level(),
            "machine": platform.machine()}


def packages() -> dict[str, str | None]:
    return {p: package_version(p) for p in PACKAGES}


def run_triples(runs: Iterable[Any]) -> list[list[Any]]:
    """``[[run, seed, run hash], ...]`` of Run objects (anything with name, run_cfg.seed, hash),
    sorted."""
    return sorted([r.name, int(r.run_cfg.seed), r.hash] for r in runs)


def figure_record(cfg: Any, runs: Iterable[Any] = (), preset_hash: str | None = None
                  ) -> dict[str, Any]:
    """The provenance of one figure: preset name and hash, the resolved precision, the runs it read,
    package versions and machine kind. ``cfg``: the StudyConfig."""
    return {
        "preset": cfg.name,
        "preset_hash": preset_hash or hash_of(cfg),
        "precision": precision.resolve_precision(cfg.precision, cfg.device).name,
        "runs": run_triples(runs),
        "packages": packages(),
        **machine(),
    }


def png_text(record: Mapping[str, Any]) -> dict[str, str]:
    """PNG text chunks of a record (one JSON chunk, keys sorted: stable bytes)."""
    return {PNG_KEY: json.dumps(record, sort_keys=True, separators=(",", ":"))}


def read_png(path: str | Path) -> dict[str, Any] | None:
    """The record stored in a PNG by ``plots.save_figure``, or None."""
    from PIL import Image

    with Image.open(path) as im:
        text = im.text.get(PNG_KEY) if hasattr(im, "text") else None
    return json.loads(text) if text else None


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # absent or damaged: rebuilt from what is written next


def _dump(path: Path, data: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def record_figure(fig_dir: str | Path, name: str, record: Mapping[str, Any]) -> Path:
    """Merge ``record`` as ``figures[name]`` into ``fig_dir/provenance.json`` (atomically;
    what the study added for that figure, its notebook, is kept)."""
    path = Path(fig_dir) / FILE
    data = _load(path)
    figures = data.setdefault("figures", {})
    old = figures.get(name, {})
    figures[name] = {**({"notebook": old["notebook"]} if "notebook" in old else {}),
                     **record}
    _dump(path, data)
    return path


def mark_notebook(fig_dir: str | Path, names: Iterable[str], notebook: str,
                  commit: Mapping[str, Any] | None = None) -> Path | None:
    """The study's part: the notebook that wrote ``names`` and, at the top, the code commit."""
    names = list(names)
    path = Path(fig_dir) / FILE
    if not names and commit is None:
        return None
    data = _load(path)
    figures = data.setdefault("figures", {})
    for n in names:
        figures.setdefault(n, {})["notebook"] = notebook
    if commit is not None:
        data["code"] = dict(commit)
    _dump(path, data)
    return path


def notebook_code_hash(notebooks_dir: str | Path | None = None) -> str:
    """sha256 (12 hex digits) over every notebook's name and code cells (not outputs)."""
    h = hashlib.sha256()
    for nb in sorted(Path(notebooks_dir or paths.NOTEBOOKS_DIR).glob("*.ipynb")):
        cells = json.loads(nb.read_text()).get("cells", [])
        h.update(nb.name.encode())
        for c in cells:
            if c.get("cell_type") == "code":
                h.update("".join(c.get("source", "")).encode() + b"\0")
    return h.hexdigest()[:12]


def code_commit(root: str | Path | None = None) -> dict[str, Any]:
    """The last commit that changed the code (``CODE_PATHS``), whether those paths have
    uncommitted changes (nulls outside a git checkout), and :func:`notebook_code_hash`."""
    root = Path(root or paths.SOURCE_ROOT)
    try:
        nb_hash = notebook_code_hash(root / "notebooks")
    except (OSError, ValueError):
        nb_hash = None
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()

        commit = git("log", "-1", "--format=%H", "--", *CODE_PATHS)
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS)
        return {"commit": commit or None, "dirty": bool(dirty), "paths": list(CODE_PATHS),
                "notebooks": nb_hash}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None, "paths": list(CODE_PATHS), "notebooks": nb_hash}


def environment(run_cfg: RunConfig, device: torch.device, world_size: int = 1) -> dict[str, Any]:
    """What ``env.json`` records: the machine, the device, the run, the package versions of
    ``PACKAGES`` (:func:`packages`, as in the figures' provenance) and the code commit of
    :func:`code_commit`: ``git_commit`` is the last commit that changed ``code_paths``
    (``CODE_PATHS``), ``git_dirty`` whether those paths have uncommitted changes."""
    code = code_commit()
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "packages": packages(),
        "device": str(device),
        "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "world_size": world_size,
        "torch_threads": torch.get_num_threads(),
        "seed": run_cfg.seed,
        "precision": run_cfg.precision,
        "run": run_cfg.run,
        "hash": run_hash(run_cfg),
    }
    info.update({"git_commit": code["commit"], "git_dirty": code["dirty"],
                 "code_paths": code["paths"]})
    return info
