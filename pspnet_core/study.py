"""The batch rerun of the whole study: every notebook through papermill, in order.

Command line::

    python -m pspnet_core.study --params smoke            # the README's first command
    python -m pspnet_core.study --params paper --only 03 --only 05
    python -m pspnet_core.study --params path/to/my.yaml --only 01,02 --kernel python3
    python -m pspnet_core.study --params smoke --set train.epochs=2

Executes every ``notebooks/NN_*.ipynb`` in filename order with papermill and an explicit
kernel (default ``pspnet-study``, the kernel the README's setup registers; ``python3`` when that
kernelspec is not installed), passing the parameters ``preset`` (and ``overrides`` when given)
to each notebook's ``parameters`` cell. Notebooks listed in :data:`VARIANTS` run once per
variant with extra parameters (``03_learning_curves`` twice: ``optimizer="sgd"`` and
``"adam"``, written as ``03_learning_curves-sgd.ipynb`` / ``-adam.ipynb``).

Outputs, for preset name P (a preset file's ``name:``, else its file stem)::

    outputs/P/NN_topic[-variant].ipynb    executed notebooks (written as they run)
    outputs/P/NN_topic[-variant].html     nbconvert HTML exports
    outputs/P/index.html                  links to each export + thumbnails of figures/P/*.png

One progress line per notebook with its elapsed seconds (papermill's cell progress bar on
stderr). On the first failing notebook the run stops, the index is still written for what ran,
and the command exits 1 with the notebook, the failing cell (execution count, position in the
source notebook, first source line) and the exception name and value.

Python API::

    run_study(preset="smoke", only=None, notebooks_dir=NOTEBOOKS_DIR, outputs_dir=None,
              figures_dir=None, kernel="pspnet-study", overrides=None, export_html=True,
              progress_bar=True, log=print) -> StudyResult
    plan(notebooks_dir, only=None) -> list[Job]       # what would run, in order
    choose_kernel(requested) -> str
    write_index(outputs_dir, results, figures_dir, preset) -> Path
"""

from __future__ import annotations

import argparse
import html
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pspnet_core.atomic import atomic_write_text
from pspnet_core.config import ParamsError, load_params, parse_overrides
from pspnet_core.paths import NOTEBOOKS_DIR, resolve

DEFAULT_KERNEL = "pspnet-study"
FALLBACK_KERNEL = "python3"

# notebook stem -> [(suffix, extra parameters)]; every other notebook runs once, no suffix
VARIANTS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "03_learning_curves": [("sgd", {"optimizer": "sgd"}), ("adam", {"optimizer": "adam"})],
}


class StudyError(RuntimeError):
    """The study could not start (bad preset, no notebooks, no kernel)."""


@dataclass(frozen=True)
class Job:
    """One notebook execution: source notebook, output stem, extra parameters."""

    notebook: Path
    name: str  # output stem, e.g. "03_learning_curves-sgd"
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobResult:
    job: Job
    status: str  # "ok" | "failed"
    seconds: float
    output: Path | None = None  # executed .ipynb
    html: Path | None = None
    error: str | None = None


@dataclass
class StudyResult:
    preset: str
    results: list[JobResult]
    index: Path | None
    seconds: float

    @property
    def ok(self) -> bool:
        return all(r.status == "ok" for r in self.results)

    @property
    def error(self) -> str | None:
        return next((r.error for r in self.results if r.error), None)


# ---------------------------------------------------------------- planning


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
        for suffix, extra in VARIANTS.get(nb.stem, [("", {})]):
            jobs.append(Job(nb, f"{nb.stem}-{suffix}" if suffix else nb.stem, dict(extra)))
    return jobs


def choose_kernel(requested: str = DEFAULT_KERNEL, log: Callable[[str], None] = print) -> str:
    """``requested`` if that kernelspec is installed, else ``python3`` (with a note)."""
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    if requested in specs:
        return requested
    if FALLBACK_KERNEL in specs:
        log(
            f"kernel {requested!r} is not installed (have: {', '.join(sorted(specs))}); "
            f"using {FALLBACK_KERNEL!r}. Register it with: python -m ipykernel install "
            f"--sys-prefix --name {DEFAULT_KERNEL}"
        )
        return FALLBACK_KERNEL
    raise StudyError(
        f"no kernel {requested!r} and no {FALLBACK_KERNEL!r}; installed: "
        f"{', '.join(sorted(specs)) or 'none'}"
    )


def _preset(
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


# ---------------------------------------------------------------- execution


def _describe_failure(job: Job, output: Path, err: Exception) -> str:
    """Name the notebook and the failing cell of a papermill error."""
    from papermill.exceptions import PapermillExecutionError

    where = f"notebook {job.notebook.name}"
    if job.parameters:
        where += " (" + ", ".join(f"{k}={v!r}" for k, v in job.parameters.items()) + ")"
    if not isinstance(err, PapermillExecutionError):
        return f"{where} failed: {type(err).__name__}: {err}"
    cell = "a cell"
    try:  # position in the source notebook: skip papermill's injected-parameters cell
        import nbformat

        nb = nbformat.read(output, as_version=4)
        # papermill puts an error banner cell on top of the saved notebook; cell_index is
        # counted without it
        cells = [
            c for c in nb.cells if "papermill-error-cell-tag" not in c.metadata.get("tags", [])
        ]
        before = cells[: err.cell_index]
        injected = sum("injected-parameters" in c.metadata.get("tags", []) for c in before)
        cell = f"cell {err.cell_index - injected + 1}"
    except Exception:  # noqa: BLE001 - best effort; exec_count is still reported
        pass
    first = next((ln for ln in str(err.source).splitlines() if ln.strip()), "").strip()
    return (
        f"{where} failed in {cell} (counting markdown cells; In [{err.exec_count}] of the "
        f"executed notebook): {first[:80]!r}\n  {err.ename}: {err.evalue}\n"
        f"  traceback in the executed notebook: {output}"
    )


def _export_html(ipynb: Path) -> Path | None:
    import nbformat
    from nbconvert import HTMLExporter

    if not ipynb.is_file():
        return None
    nb = nbformat.read(ipynb, as_version=4)
    body, _ = HTMLExporter().from_notebook_node(nb)
    target = ipynb.with_suffix(".html")
    atomic_write_text(target, body)
    return target


def write_index(
    outputs_dir: str | Path,
    results: Sequence[JobResult],
    figures_dir: str | Path,
    preset: str,
    seconds: float | None = None,
) -> Path:
    """``outputs_dir/index.html``: each executed notebook's HTML and the figure thumbnails
    (links relative to the index, so the folder tree can be moved or served as is)."""
    out = Path(outputs_dir)
    fig_dir = Path(figures_dir)

    def rel(p: Path) -> str:
        return html.escape(Path(os.path.relpath(p, out)).as_posix(), quote=True)

    rows = []
    for r in results:
        link = (
            f'<a href="{rel(r.html)}">{html.escape(r.job.name)}</a>'
            if r.html
            else html.escape(r.job.name)
        )
        nb = f'<a href="{rel(r.output)}">.ipynb</a>' if r.output and r.output.exists() else ""
        err = f"<pre>{html.escape(r.error)}</pre>" if r.error else ""
        rows.append(
            f'<tr class="{r.status}"><td>{link}</td><td>{nb}</td><td>{r.status}</td>'
            f"<td>{r.seconds:.1f} s</td><td>{err}</td></tr>"
        )
    figs = sorted(fig_dir.glob("*.png")) if fig_dir.is_dir() else []
    thumbs = "\n".join(
        f'<figure><a href="{rel(p)}"><img src="{rel(p)}" alt="{html.escape(p.stem)}"></a>'
        f"<figcaption>{html.escape(p.stem)}</figcaption></figure>"
        for p in figs
    )
    total = f" in {seconds:.0f} s" if seconds is not None else ""
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>PSPNet study: {html.escape(preset)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ padding: 4px 10px; border-bottom: 1px solid #ddd; }}
tr.failed td {{ background: #fdd; }} pre {{ white-space: pre-wrap; margin: 0; }}
figure {{ display: inline-block; margin: 6px; text-align: center; }}
figure img {{ max-width: 260px; max-height: 200px; border: 1px solid #ccc; }}
</style></head><body>
<h1>PSPNet study &mdash; preset <code>{html.escape(preset)}</code></h1>
<p>{len(results)} notebook run(s){total}; generated by <code>python -m pspnet_core.study</code>.</p>
<h2>Executed notebooks</h2>
<table><tr><th>notebook</th><th></th><th>status</th><th>time</th><th>error</th></tr>
{chr(10).join(rows)}
</table>
<h2>Figures ({len(figs)})</h2>
{thumbs or "<p>no figures yet in " + html.escape(rel(fig_dir)) + "</p>"}
</body></html>
"""
    target = out / "index.html"
    atomic_write_text(target, page)
    return target


def run_study(
    preset: str | os.PathLike = "smoke",
    only: str | Iterable[str] | None = None,
    notebooks_dir: str | Path = NOTEBOOKS_DIR,
    outputs_dir: str | Path | None = None,
    figures_dir: str | Path | None = None,
    kernel: str = DEFAULT_KERNEL,
    overrides: dict[str, Any] | None = None,
    export_html: bool = True,
    progress_bar: bool = True,
    log: Callable[[str], None] = print,
) -> StudyResult:
    """Execute the study's notebooks for ``preset`` (a name in params/ or a .yaml path).

    Stops at the first failing notebook; the index is written either way. Returns a
    :class:`StudyResult` (``.ok``, ``.error``, ``.results``, ``.index``, ``.seconds``).
    """
    import papermill as pm

    t0 = time.perf_counter()
    name, value, default_figs = _preset(preset, overrides)
    nb_dir = Path(notebooks_dir).resolve()
    out_dir = Path(outputs_dir) if outputs_dir is not None else resolve("outputs") / name
    fig_dir = Path(figures_dir) if figures_dir is not None else default_figs
    jobs = plan(nb_dir, only)
    kernel_name = choose_kernel(kernel, log)
    out_dir.mkdir(parents=True, exist_ok=True)
    log(f"study: preset {name!r}, {len(jobs)} notebook run(s), kernel {kernel_name!r} -> {out_dir}")
    results: list[JobResult] = []
    for i, job in enumerate(jobs, 1):
        params: dict[str, Any] = {"preset": value, **job.parameters}
        if overrides:
            params["overrides"] = dict(overrides)
        output = out_dir / f"{job.name}.ipynb"
        extra = " ".join(f"{k}={v}" for k, v in job.parameters.items())
        log(f"[{i}/{len(jobs)}] {job.notebook.name} {extra}".rstrip() + " ...")
        t = time.perf_counter()
        try:
            pm.execute_notebook(
                str(job.notebook),
                str(output),
                parameters=params,
                kernel_name=kernel_name,
                cwd=str(nb_dir),
                progress_bar=progress_bar,
                request_save_on_cell_execute=True,
            )
            status, error = "ok", None
        except Exception as err:  # noqa: BLE001 - reported with the notebook and cell
            status, error = "failed", _describe_failure(job, output, err)
        seconds = time.perf_counter() - t
        page = None
        if export_html:
            try:
                page = _export_html(output)
            except Exception as err:  # noqa: BLE001 - an export problem must not hide results
                log(f"  (HTML export of {output.name} failed: {type(err).__name__}: {err})")
        results.append(
            JobResult(job, status, seconds, output if output.exists() else None, page, error)
        )
        log(f"[{i}/{len(jobs)}] {job.name}: {status} in {seconds:.1f} s")
        if status == "failed":
            break
    total = time.perf_counter() - t0
    index = write_index(out_dir, results, fig_dir, name, total)
    log(f"index: {index}")
    log(
        f"study {'finished' if all(r.status == 'ok' for r in results) else 'FAILED'}: "
        f"{len(results)}/{len(jobs)} notebook run(s), total wall time {total:.1f} s"
    )
    return StudyResult(name, results, index, total)


# ---------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pspnet_core.study",
        description="Rerun the study: execute every notebook with papermill, export HTML, "
        "write outputs/<preset>/index.html.",
    )
    parser.add_argument("--params", default="smoke", help="preset name in params/ or a .yaml path")
    parser.add_argument(
        "--only",
        action="append",
        metavar="PREFIX",
        help="run only notebooks whose filename starts with PREFIX (repeatable, or a,b,c)",
    )
    parser.add_argument("--kernel", default=DEFAULT_KERNEL, help="Jupyter kernel name")
    parser.add_argument(
        "--set",
        "--override",
        dest="set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a parameter in every notebook: dotted key, YAML value (repeatable), "
        "e.g. train.epochs=2 (the same syntax as pspnet_core.train)",
    )
    parser.add_argument("--no-html", action="store_true", help="skip the HTML exports")
    parser.add_argument("--no-progress", action="store_true", help="no per-cell progress bar")
    args = parser.parse_args(argv)
    try:
        overrides = parse_overrides(args.set)
    except ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        result = run_study(
            args.params,
            only=args.only,
            kernel=args.kernel,
            overrides=overrides or None,
            export_html=not args.no_html,
            progress_bar=not args.no_progress,
            log=lambda s: print(s, flush=True),
        )
    except StudyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not result.ok:
        print(f"error: {result.error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
