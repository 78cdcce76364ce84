"""The claims table: Markdown for claims.md and notebook 06; DataFrames (docs/method.md#claims)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pspnet_core.claims.statistics import ALPHA, BOOT_SEED, CONFIDENCE, N_BOOT, Claim, Part
from pspnet_core.system.atomic import atomic_write_text

RULE = (
    "Each claim is split into parts; each part measures one effect per training seed, signed "
    "so that > 0 is what the paper claims (a stated threshold or tolerance already "
    "subtracted; no noise margin: the intervals are the noise control). Intervals: the "
    f"{CONFIDENCE:.0%} t-interval of the per-seed effects (n >= 2 "
    f"seeds) and, where per-image evidence exists (claims 4 and 7), the {CONFIDENCE:.0%} "
    f"percentile interval of the seed-mean effect over {N_BOOT} resamples of the images "
    f"(seed {BOOT_SEED}; claim 4(b): half-samples without replacement). A part **holds** when "
    "every interval lies above 0 (\"about equal\": inside +-tol) and is "
    "**inconclusive** otherwise, including with one seed and no per-image evidence. **Does not "
    "hold** needs every interval below 0 (outside +-tol) *and* Holm's step-down across the "
    "claim's tested parts: the j-th smallest (j = 1..m) one-sided p-value against the claim "
    f"must be <= {ALPHA:g} / (m - j + 1), m = tested parts (one failing part suffices to "
    "reject a claim). "
    "A claim does not hold if any part does not hold, else is inconclusive if any part is, "
    "else holds if all parts hold, partly holds if the others are not testable here. Context "
    "rows are reported beside a verdict and do not enter it. The runs compared are fixed by "
    "the preset before any result is read (claim 6: claims.claim6_run)."
)


def _iv(iv: tuple[float, float] | None) -> str:
    return f"[{iv[0]:+.4g}, {iv[1]:+.4g}]" if iv is not None else "-"


def _per_seed_text(p: Part) -> str:
    return ", ".join(f"s{s} {v:+.4g}" for s, v in sorted(p.per_seed.items())) or "-"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def claims_frame(claims: Sequence[Claim]) -> pd.DataFrame:
    """One row per claim: number, text, verdict, seeds, criterion, evidence."""
    return pd.DataFrame([
        {"number": c.number, "text": c.text, "verdict": c.verdict,
         "seeds": ", ".join(map(str, c.seeds)), "criterion": c.criterion, "evidence": c.evidence}
        for c in claims
    ])


def parts_frame(claims: Sequence[Claim]) -> pd.DataFrame:
    """One row per part (context rows marked): claim number, part, verdict, per-seed effects,
    both intervals, the one-sided p-value against the claim, note."""
    rows = []
    for c in claims:
        for p, role in [(p, "part") for p in c.parts] + [(p, "context") for p in c.context]:
            rows.append({
                "number": c.number, "part": p.label, "role": role,
                "verdict": p.verdict if role == "part" else "-",
                "per_seed": _per_seed_text(p),
                "seed_lo": p.seed_interval[0] if p.seed_interval else np.nan,
                "seed_hi": p.seed_interval[1] if p.seed_interval else np.nan,
                "boot_lo": p.boot_interval[0] if p.boot_interval else np.nan,
                "boot_hi": p.boot_interval[1] if p.boot_interval else np.nan,
                "p_against": p.p_against if p.p_against is not None else np.nan,
                "note": p.note,
            })
    return pd.DataFrame(rows)


def claims_markdown(claims: Sequence[Claim], header: str = "") -> str:
    """The rule, a summary table (claim, verdict, seeds), and per claim a table of its parts:
    criterion, per-seed effects, the 95 % t-interval over seeds, the image resampling interval,
    verdict; then context rows and the evidence. ``header``: lines printed first (e.g. the
    preset hash and the runs read)."""
    out = ([header.rstrip(), ""] if header else []) + [
        f"**Rule.** {RULE}", "",
        "| # | claim of the paper | verdict | seeds |", "|---|---|---|---|"]
    for c in claims:
        seeds = ", ".join(map(str, c.seeds)) or "-"
        out.append(f"| {c.number} | {_cell(c.text)} | **{c.verdict}** | {seeds} |")
    for c in claims:
        out += ["", f"## Claim {c.number}: {c.verdict}", "", f"> {_cell(c.text)}", "",
                "| part | criterion (effect > 0 = as claimed) | per seed | "
                f"{CONFIDENCE:.0%} t-interval (seeds) | {CONFIDENCE:.0%} resampling (images) | "
                "verdict |",
                "|---|---|---|---|---|---|"]
        for p in c.parts:
            crit = p.criterion + (f" ({p.note})" if p.note else "")
            out.append(
                f"| {_cell(p.label)} | {_cell(crit)} | {_per_seed_text(p)} | "
                f"{_iv(p.seed_interval)} | {_iv(p.boot_interval)} | {p.verdict} |"
            )
        for p in c.context:
            out.append(
                f"| context: {_cell(p.label)} | {_cell(p.criterion)} (not in the verdict) | "
                f"{_per_seed_text(p)} | {_iv(p.seed_interval)} | {_iv(p.boot_interval)} | - |"
            )
        out += ["", f"Evidence: {_cell(c.evidence)}"]
    return "\n".join(out) + "\n"


def write_claims(
    claims: Sequence[Claim],
    path: str | Path,
    title: str | None = "Claims of the paper, checked",
    header: str = "",
) -> Path:
    """Write :func:`claims_markdown` (with an optional heading) to ``path`` atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = (f"# {title}\n\n" if title else "") + claims_markdown(claims, header)
    atomic_write_text(target, text)
    return target


def report_header(preset: str, preset_hash: str, run_hashes: dict[str, dict[int, str]]) -> str:
    """The lines claims.md starts with: the preset and its hash, and every (run, seed, run
    hash) the verdicts read."""
    runs = "; ".join(f"{name} " + ", ".join(f"s{s} {h}" for s, h in sorted(seeds.items()))
                     for name, seeds in run_hashes.items())
    return f"Preset **{preset}** (hash {preset_hash}). Runs read (run, seed, run hash): {runs}."
