"""Did a rerun reproduce the study? (docs/architecture.md#reproduction)

:func:`results_table` reads the run store into one row per (run, seed): the final and best
held-out numbers. The study writes it to ``outputs/<preset>/results.csv`` and to
``figures/<preset>/results.csv``, whose committed copy (``figures/smoke/``) is the reference.
:func:`compare` sets a rerun against the reference, per run: the final held-out loss and
metric, mean and seed spread in both, and a flag only when the difference of the means lies
outside what the seeds' spread explains (the 95 % Welch interval of the difference excludes
0). :func:`verdict_changes` lists the claims whose verdict changed. The contract: the same CPU
kind with the locked environment gives byte-identical numbers; another kind gives numbers
within seed noise, and the report says whether that holds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from pspnet_core.config import StudyConfig, load_params, resolve_run
from pspnet_core.store import provenance
from pspnet_core.store.files import RunFileError
from pspnet_core.store.runs import peek_run
from pspnet_core.system import paths
from pspnet_core.system.atomic import atomic_write_text

COLUMNS = ("run", "seed", "hash", "status", "epochs", "final_heldout_loss",
           "best_heldout_loss", "metric", "final_metric", "best_metric", "dir")
COMPARED = ("final_heldout_loss", "final_metric")


class ResultsFileError(ValueError):
    """A results.csv (the reference a rerun is compared with) that cannot be read as one; the
    message names the file."""


def read_results(text: str, where: str | Path = "results.csv") -> pd.DataFrame:
    """A results.csv's text as the frame :func:`compare` reads: the columns ``run``, ``seed``
    and the compared ones, seeds integers, numbers numeric (empty for a run not done).
    :class:`ResultsFileError` naming ``where`` otherwise."""
    import io

    try:
        frame = pd.read_csv(io.StringIO(text), dtype={"run": str})
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ResultsFileError(f"{where} is not a CSV table ({first})") from None
    missing = [c for c in ("run", "seed", *COMPARED) if c not in frame.columns]
    if missing:
        raise ResultsFileError(f"{where} lacks the column(s) {', '.join(missing)}; it is not a "
                               "results.csv written by the study")
    try:
        seeds = pd.to_numeric(frame["seed"], errors="raise")
        numbers = {c: pd.to_numeric(frame[c], errors="raise").astype(float) for c in COMPARED}
    except (ValueError, TypeError) as err:
        raise ResultsFileError(f"{where}: a seed or number is not numeric ({err})") from None
    if seeds.isna().any() or (seeds % 1 != 0).any() or frame["run"].isna().any():
        raise ResultsFileError(f"{where}: every row needs a run name and an integer seed")
    return frame.assign(seed=seeds.astype("int64"), **numbers)


def results_table(cfg: StudyConfig) -> pd.DataFrame:
    """One row per (run, seed) of the preset: status, the final and best held-out loss and
    metric (mIoU for VOC runs, Dice for the leaf run) from the history, and the run folder
    relative to the project root. Runs that are not done have empty numbers."""
    rows = []
    for name, spec in cfg.runs.items():
        metric = "heldout_dice" if spec.task == "leaf" else "heldout_miou"
        for seed in cfg.seeds:
            r = peek_run(resolve_run(cfg, name, seed))  # a damaged run is a row too
            damaged = r.status == "damaged"
            row: dict[str, Any] = {"run": name, "seed": seed, "hash": r.hash,
                                   "status": r.status,
                                   "epochs": None if damaged else r.epochs_done,
                                   "metric": metric.removeprefix("heldout_"),
                                   "dir": _relative(r.dir)}
            try:
                h = r.history if r.done else pd.DataFrame()
            except RunFileError:
                h, row["status"] = pd.DataFrame(), "damaged"
            if len(h):
                loss = h["heldout_loss"].astype(float)
                m = h[metric].astype(float) if metric in h else pd.Series([np.nan])
                row.update(final_heldout_loss=float(loss.iloc[-1]),
                           best_heldout_loss=float(loss.min()),
                           final_metric=float(m.iloc[-1]), best_metric=float(m.max()))
            rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _relative(p: Path) -> str:
    try:
        return Path(p).resolve().relative_to(paths.project_root().resolve()).as_posix()
    except (ValueError, AttributeError):
        return str(p)


def _welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float] | None:
    """95 % Welch interval of mean(b) - mean(a); None when neither side has a spread."""
    na, nb = len(a), len(b)
    va = a.var(ddof=1) if na > 1 else 0.0
    vb = b.var(ddof=1) if nb > 1 else 0.0
    se2 = (va / na if na > 1 else 0.0) + (vb / nb if nb > 1 else 0.0)
    if se2 <= 0:
        return None
    terms = [(va / na) ** 2 / (na - 1) if na > 1 else 0.0,
             (vb / nb) ** 2 / (nb - 1) if nb > 1 else 0.0]
    df = se2**2 / sum(terms) if sum(terms) > 0 else 1.0
    h = float(stats.t.ppf(0.975, df)) * math.sqrt(se2)
    d = float(b.mean() - a.mean())
    return (d - h, d + h)


def compare(reference: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """Per run and compared column: reference and rerun mean +- sd over seeds, the difference,
    and ``status``: ``identical`` (every seed equal to 1e-12), ``within seed noise``, ``outside
    seed noise`` (flagged), or ``cannot judge`` (no spread on either side, or a side missing)."""
    rows = []
    for run in sorted(set(reference["run"]) | set(current["run"])):
        ref = reference[reference["run"] == run].sort_values("seed")
        cur = current[current["run"] == run].sort_values("seed")
        for col in COMPARED:
            a = ref[col].astype(float).dropna().to_numpy()
            b = cur[col].astype(float).dropna().to_numpy()
            row = {"run": run, "quantity": col, "n_reference": len(a), "n_rerun": len(b),
                   "reference": _mean_sd(a), "rerun": _mean_sd(b),
                   "difference": float(b.mean() - a.mean()) if len(a) and len(b) else np.nan}
            seeds_a = list(ref["seed"][ref[col].notna()])
            paired = len(a) == len(b) > 0 and seeds_a == list(cur["seed"][cur[col].notna()])
            if not len(a) or not len(b):
                row["status"] = "cannot judge"
            elif paired and np.allclose(a, b, rtol=0, atol=1e-12):
                row["status"] = "identical"
            else:
                iv = _welch(a, b)
                row["status"] = ("cannot judge" if iv is None else
                                 "outside seed noise" if iv[0] > 0 or iv[1] < 0 else
                                 "within seed noise")
            row["flagged"] = row["status"] == "outside seed noise"
            rows.append(row)
    return pd.DataFrame(rows)


def _mean_sd(v: np.ndarray) -> str:
    if not len(v):
        return "-"
    if len(v) == 1:
        return f"{v[0]:.4g} (1 seed)"
    return f"{v.mean():.4g} +- {v.std(ddof=1):.4g} ({len(v)} seeds)"


VERDICT_ROW = re.compile(r"^\| (\d+) \| .* \| \*\*([a-z ]+)\*\* \| [^|]* \|$", re.M)


def verdicts(claims_md: str) -> dict[int, str]:
    """``{claim number: verdict}`` from the summary table of a claims.md."""
    return {int(n): v for n, v in VERDICT_ROW.findall(claims_md)}


def verdict_changes(reference_md: str, current_md: str) -> list[tuple[int, str, str]]:
    """``(claim, reference verdict, rerun verdict)`` for every claim whose verdict changed."""
    a, b = verdicts(reference_md), verdicts(current_md)
    return [(n, a.get(n, "-"), b.get(n, "-")) for n in sorted(set(a) | set(b))
            if a.get(n) != b.get(n)]


def report(comparison: pd.DataFrame, changes: list[tuple[int, str, str]],
           machine: dict[str, str] | None = None) -> str:
    """The reproduction report as Markdown (printed at the end of the study)."""
    lines = ["# Reproduction report", ""]
    if machine:
        lines += [f"Rerun on {machine.get('cpu', '?')} (kernels {machine.get('kernels', '?')}, "
                  f"bf16 kernels: {machine.get('isa', '?')}).", ""]
    if comparison.empty and not changes:
        lines.append("No reference results (figures/<preset>/results.csv) to compare with: "
                     "neither numbers nor verdicts were compared.")
        return "\n".join(lines) + "\n"
    if comparison.empty:
        lines.append("No reference results (figures/<preset>/results.csv) to compare with.")
    else:
        flagged = comparison[comparison["flagged"]]
        same = (comparison["status"] == "identical").all()
        lines.append(
            "Every number identical to the reference." if same else
            f"{len(flagged)} of {len(comparison)} compared quantities differ beyond seed noise."
            if len(flagged) else
            "Numbers differ from the reference, all within what the seeds' spread explains.")
        lines += ["", "| run | quantity | reference | rerun | difference | status |",
                  "|---|---|---|---|---|---|"]
        for r in comparison.itertuples():
            diff = "-" if not np.isfinite(r.difference) else f"{r.difference:+.4g}"
            status = f"**{r.status}**" if r.flagged else r.status
            lines.append(f"| {r.run} | {r.quantity} | {r.reference} | {r.rerun} | {diff} | "
                         f"{status} |")
    lines.append("")
    lines.append("Verdicts unchanged." if not changes else "Verdicts changed: " + "; ".join(
        f"claim {n}: {a} -> {b}" for n, a, b in changes) + ".")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- after a finished study


def reference_files(fig_dir: Path) -> dict[str, str]:
    """The committed results.csv and claims.md of this preset, as they were before the rerun."""
    out = {}
    for name in ("results.csv", "claims.md"):
        try:
            out[name] = (fig_dir / name).read_text()
        except OSError:
            pass
    return out


def reproduction(preset: Any, overrides: dict[str, Any] | None, out_dir: Path,
                  fig_dir: Path, ref_dir: Path, reference: dict[str, str],
                  log: Callable[[str], None],
                  *, write_reference: bool = False, mark_code: bool = True) -> None:
    """After a finished study: results.csv in outputs/ (and, with ``write_reference``, as the
    reference in the figure folder), the code commit in provenance.json (``mark_code``), and
    the reproduction report against the reference (printed and written to
    outputs/<preset>/reproduction.md)."""
    import pandas as pd

    cfg = load_params(preset, overrides or None)
    table = results_table(cfg)
    text = table.to_csv(index=False)
    atomic_write_text(out_dir / "results.csv", text)
    if write_reference:
        atomic_write_text(ref_dir / "results.csv", text)
    elif "results.csv" in reference:
        log(f"  (the reference {ref_dir / 'results.csv'} is kept; this rerun's numbers are in "
            f"{out_dir / 'results.csv'}; --update-reference makes them the reference)")
    if mark_code:
        provenance.mark_notebook(ref_dir, [], "", commit=provenance.code_commit())
    comparison = pd.DataFrame()
    if "results.csv" in reference:
        try:
            comparison = compare(
                read_results(reference["results.csv"], ref_dir / "results.csv"), table)
        except ResultsFileError as err:
            log(f"  (reference unreadable: {err}; no comparison)")
    claims_now = (fig_dir / "claims.md").read_text() if (fig_dir / "claims.md").is_file() else ""
    changes = (verdict_changes(reference["claims.md"], claims_now)
               if "claims.md" in reference and claims_now else [])
    text = report(comparison, changes, provenance.machine())
    atomic_write_text(out_dir / "reproduction.md", text)
    log(text.rstrip())
