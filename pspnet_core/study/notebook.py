"""The notebooks' first cell: one call that loads the preset and says where figures go.

Every notebook starts with::

    from pspnet_core.study.notebook import setup
    cfg, fig_dir = setup(preset, overrides)

``preset`` and ``overrides`` come from the notebook's ``parameters`` cell (papermill injects the
study's values there). The figure folder is ``<figures_dir>/<preset name>``; ``figures_dir`` may
be relative (to the project root, docs/architecture.md) or absolute.

``setup`` is the notebooks' error boundary (``pspnet_core/system/errors.py``): a bad preset,
override or notebook parameter (passed as keywords and validated with the notebook contract,
:mod:`pspnet_core.study.contract`; a name papermill injected that the notebook does not take
included) stops the cell with one line, ``error: ...``, instead
of a traceback (:class:`NotebookError`, which Jupyter and papermill render as that line).
In a Jupyter kernel it also installs the boundary for the cells after it
(:func:`install_cell_boundary`): a damaged run, bad data or a full disk later in the notebook is
one line too; a bug (an unknown exception) keeps its traceback, and ``PSPNET_DEBUG=1`` shows
every traceback.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

from pspnet_core.config import SGD_MIX, StudyConfig, load_params, show
from pspnet_core.store.studystate import FIGURES_ENV
from pspnet_core.study.contract import check_names, check_parameters, missing_runs
from pspnet_core.system import errors, paths, process


class NotebookError(Exception):
    """An expected error stopped a notebook cell: shown as one line (``error: <message>``), not
    a traceback; ``code`` is the command-line exit code it stands for (2, 1 or 130)."""

    def __init__(self, message: str, code: int = errors.EXIT_BAD_INPUT):
        super().__init__(message)
        self.code = code

    def _render_traceback_(self) -> list[str]:  # IPython's hook: what the cell shows
        return [f"error: {self}"]


def _bad(key: str, value: Any, why: str) -> NotebookError:
    return NotebookError(f"notebook parameter {key}: {show(value)} {why}")


def augmentation_run(cfg: StudyConfig) -> str:
    """The run whose pipeline Figs. 2-4 draw: ``sgd_mix`` (the paper's augmented SGD run) when
    the preset trains it, else its first PSPNet run on the segmentation task."""
    why = missing_runs(cfg, "02_augmentation", {})
    if why:
        raise NotebookError(why)
    if SGD_MIX in cfg.runs and cfg.runs[SGD_MIX].task == "voc":
        return SGD_MIX
    return next(n for n, spec in cfg.runs.items() if spec.task == "voc" and spec.arch == "pspnet")


def _kernel_shell() -> Any:
    """The IPython shell of this kernel, or None outside one."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with the notebooks' kernel
        return None
    return get_ipython()


PAPERMILL_HEADER = "# Parameters\n"  # the first line of the cell papermill injects


def injected_names(shell: Any = None) -> set[str] | None:
    """The names papermill's injected-parameters cell assigned in this kernel (``-p``, ``-y``,
    ``pspnet-study``), or None outside a kernel or when no cell was injected."""
    shell = shell if shell is not None else _kernel_shell()
    if shell is None:
        return None
    cells = [c for c in shell.user_ns.get("In", []) if c.startswith(PAPERMILL_HEADER)]
    if not cells:
        return None
    tree = ast.parse(cells[-1])
    return {t.id for node in tree.body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)}


def _cell_error(shell: Any, etype: type, value: BaseException, tb: Any,
                tb_offset: int | None = None) -> list[str]:
    """IPython's custom exception handler: one line for an expected error, the usual
    traceback for a bug (or with ``PSPNET_DEBUG=1``)."""
    if errors.exit_code(value) is None or errors.debug_requested():
        stb = shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset)
    else:
        stb = [f"error: {errors.one_line(value)}"]
    shell._showtraceback(etype, value, stb)
    return stb


def install_cell_boundary() -> bool:
    """In an IPython kernel, show every later cell's expected error as one line (the CLIs'
    boundary, ``errors.py``); returns whether it is installed (False outside IPython)."""
    shell = _kernel_shell()
    if shell is None:
        return False
    if getattr(shell, "_pspnet_cell_boundary", False):
        return True
    shell.set_custom_exc((Exception,), _cell_error)
    shell._pspnet_cell_boundary = True
    return True


def check_index(key: str, value: int | None, n: int) -> None:
    """``value`` must index a sequence of ``n`` items (None: the notebook's choice)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or not 0 <= value < n):
        raise _bad(key, value, f"is out of range: there are {n} (0..{n - 1})")


def figure_dir(cfg: StudyConfig) -> Path:
    """Where a notebook's figures go. In a whole study (``pspnet-study``, ``make study``): the
    reference folder ``<figures_dir>/<name>`` the repository commits. Anywhere else (JupyterLab,
    ``papermill``, a study with ``--only`` or ``--param``): ``outputs/<name>/figures``, so a
    partial or interactive rerun never overwrites the reference figures."""
    chosen = os.environ.get(FIGURES_ENV)
    if chosen:
        return Path(chosen)
    return paths.resolve("outputs") / cfg.name / "figures"


def reference_dir(cfg: StudyConfig) -> Path:
    """``<figures_dir>/<name>`` of a preset, resolved against the project root: the figures,
    ``claims.md`` and ``results.csv`` a whole study writes and the repository commits."""
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
    notebook: str | None = None,
    **parameters: Any,
) -> tuple[StudyConfig, Path]:
    """(validated config, figure folder) of ``preset`` with ``overrides`` applied; prints one
    line naming the preset and the figure folder unless ``announce`` is false. ``parameters``
    are the notebook's own, validated with the notebook contract (``contract.check_parameters``);
    ``notebook`` (its stem) also refuses any name papermill injected that the notebook does not
    take (a misspelt ``-p optimiser adam``), naming the valid ones. Every expected error is a
    :class:`NotebookError` (one line in the notebook). In a kernel, the objects of the imports
    before it are frozen out of the garbage collector's walks (:mod:`process`)."""
    if install_cell_boundary():
        process.freeze_imports()
    if not isinstance(preset, (str, os.PathLike)):
        raise _bad("preset", preset, "must be a preset name or a path to a .yaml file")
    if overrides is not None and (not isinstance(overrides, dict) or not all(
            isinstance(k, str) for k in overrides)):
        raise _bad("overrides", overrides, "must be a mapping of dotted keys to values, e.g. "
                   "{'train.epochs': 2}")
    try:
        injected = injected_names()
        if injected is not None and notebook is not None:
            check_names(notebook, injected, "set by papermill -p/-y or pspnet-study --param")
        cfg = load_params(preset, overrides or None)
        check_parameters(cfg, **parameters)
    except NotebookError:
        raise
    except Exception as err:  # noqa: BLE001 - the notebooks' error boundary
        code = errors.exit_code(err)
        if code is None:
            raise  # a bug: its traceback is wanted
        raise NotebookError(errors.one_line(err), code) from None
    fig_dir = figure_dir(cfg)
    if announce:
        print(f"preset {cfg.name!r}: figures go to {display_path(fig_dir)}")
    return cfg, fig_dir
