"""The verdict rule of the claims (docs/method.md#claims): intervals, bootstrap, Holm.

A claim is split into *parts*. A part measures one **effect** per training seed, signed so that
a positive value is what the paper claims (a stated threshold or tolerance already
subtracted; never a noise margin, which would make noise count against the claim: the intervals
are the noise control). Its evidence is one or two intervals of the seed-mean effect:

- **seed interval**: the 95 % t-interval of the per-seed effects (n >= 2 seeds);
- **image resampling** (parts with per-image evidence): the 95 % percentile interval of the
  seed-mean effect over resamples of the images of every seed (:func:`resampled_interval`).

A part **holds** when every interval lies above 0 ("about equal" parts: inside ``(-tol, tol)``),
is a candidate for **does not hold** when every interval lies below 0 (outside ``[-tol, tol]``),
and is **inconclusive** otherwise (also without any interval). "Does not hold" for a claim is a
union over its parts, so it is decided at an adjusted level: Holm's step-down over the one-sided
p-values of the m tested parts (:func:`holm_does_not_hold`); a part below 0 at 95 % that Holm
does not reject is inconclusive. "Holds" needs every part to hold (an intersection: no
adjustment).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from scipy import stats

Verdict = Literal["holds", "does not hold", "partly holds", "inconclusive", "not testable here"]
VERDICTS: tuple[str, ...] = (
    "holds", "does not hold", "partly holds", "inconclusive", "not testable here"
)
Kind = Literal["greater", "within"]

CONFIDENCE = 0.95  # both intervals (two-sided)
ALPHA = (1 - CONFIDENCE) / 2  # one-sided level of each interval's "below 0" (0.025)
N_BOOT = 1000  # image resamples
BOOT_SEED = 0


@dataclass(frozen=True)
class Part:
    """One sub-claim: its effect per seed, the intervals and the verdict they give.

    ``kind="greater"``: claimed effect > 0. ``kind="within"``: claimed ``|effect| < tol``.
    ``p_against``: the one-sided p-value of the opposite of the claim (effect < 0, or
    ``|effect| > tol``), the largest over the part's tests; None without an interval.
    """

    label: str
    criterion: str
    verdict: Verdict
    per_seed: dict[int, float] = field(default_factory=dict)
    seed_interval: tuple[float, float] | None = None
    boot_interval: tuple[float, float] | None = None
    kind: Kind = "greater"
    tol: float = 0.0
    note: str = ""
    p_against: float | None = None


@dataclass(frozen=True)
class Claim:
    """One claim of the paper and what the runs say about it. ``context``: parts reported beside
    the verdict that do not enter it."""

    number: int
    text: str
    verdict: Verdict
    evidence: str
    criterion: str = ""
    parts: tuple[Part, ...] = ()
    seeds: tuple[int, ...] = ()
    context: tuple[Part, ...] = ()

    @property
    def holds(self) -> bool | None:
        """True for holds, False for does not hold, None otherwise."""
        return {"holds": True, "does not hold": False}.get(self.verdict)


# ---------------------------------------------------------------- intervals


def t_interval(
    values: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float] | None:
    """``mean +- t((1+confidence)/2, n-1) * sd / sqrt(n)`` of finite ``values``; None if n < 2."""
    v = _finite(values)
    if len(v) < 2:
        return None
    m, sd = float(v.mean()), float(v.std(ddof=1))
    h = float(stats.t.ppf((1 + confidence) / 2, len(v) - 1)) * sd / math.sqrt(len(v))
    return (m - h, m + h)


def percentile_interval(
    draws: np.ndarray, confidence: float = CONFIDENCE
) -> tuple[float, float] | None:
    """The central ``confidence`` percentile interval of finite ``draws`` (>= 10 of them)."""
    s = _finite(draws)
    if len(s) < 10:
        return None
    a = (1 - confidence) / 2
    return (float(np.quantile(s, a)), float(np.quantile(s, 1 - a)))


def _finite(values) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    return v[np.isfinite(v)]


def resampled_interval(
    draws: Mapping[int, np.ndarray], center: Mapping[int, float] | None = None
) -> np.ndarray | None:
    """Draws of the seed-mean effect from per-seed draws ``{seed: (B,)}`` (resamples of that
    seed's images). With ``center`` (per-seed full-sample effects), each seed's draws are
    recentred on it: ``center + (draw - mean(draws))`` (subsampling without replacement, whose
    spread, not location, is the evidence)."""
    if not draws:
        return None
    rows = []
    for s, d in sorted(draws.items()):
        d = np.asarray(d, dtype=float)
        if center is not None:
            d = center[s] + (d - np.nanmean(d))
        rows.append(d)
    return np.stack(rows).mean(0)  # (B,)


# ---------------------------------------------------------------- p-values and verdicts


def _t_p_against(v: np.ndarray, kind: Kind, tol: float) -> float:
    se = float(v.std(ddof=1)) / math.sqrt(len(v))
    df, m = len(v) - 1, float(v.mean())
    if se == 0:
        if kind == "greater":
            return 0.0 if m < 0 else 1.0
        return 0.0 if abs(m) >= tol else 1.0
    if kind == "greater":  # H0: effect >= 0
        return float(stats.t.cdf(m / se, df))
    return float(min(stats.t.sf((m - tol) / se, df), stats.t.cdf((m + tol) / se, df)))


def _boot_p_against(draws: np.ndarray, kind: Kind, tol: float) -> float:
    d = _finite(draws)
    if kind == "greater":
        return float((d >= 0).mean())
    return float(min((d <= tol).mean(), (d >= -tol).mean()))


def judge(iv: tuple[float, float], kind: Kind, tol: float) -> Verdict:
    """The verdict of one interval (module docstring)."""
    lo, hi = iv
    if kind == "within":
        if -tol < lo and hi < tol:
            return "holds"
        if lo >= tol or hi <= -tol:
            return "does not hold"
        return "inconclusive"
    if lo > 0:
        return "holds"
    if hi < 0:
        return "does not hold"
    return "inconclusive"


def make_part(
    label: str,
    criterion: str,
    per_seed: Mapping[int, float],
    draws: np.ndarray | None = None,
    kind: Kind = "greater",
    tol: float = 0.0,
    note: str = "",
) -> Part:
    """A part from its per-seed effects (non-finite values dropped) and optional draws of the
    seed-mean effect over image resamples (:func:`resampled_interval`)."""
    vals = {int(s): float(v) for s, v in per_seed.items() if np.isfinite(v)}
    if not vals:
        return untestable_part(label, criterion, note or "no finite effect for any seed")
    v = np.asarray(list(vals.values()))
    seed_iv = t_interval(v)
    boot_iv = percentile_interval(draws) if draws is not None else None
    ps = []
    if seed_iv is not None:
        ps.append(_t_p_against(v, kind, tol))
    if boot_iv is not None:
        ps.append(_boot_p_against(draws, kind, tol))
    intervals = [iv for iv in (seed_iv, boot_iv) if iv is not None]
    if not intervals:
        verdict: Verdict = "inconclusive"
        note = (note + "; " if note else "") + (
            "one seed and no per-image evidence: no interval, so inconclusive")
    else:
        found = {judge(iv, kind, tol) for iv in intervals}
        verdict = found.pop() if len(found) == 1 else "inconclusive"
    return Part(label, criterion, verdict, vals, seed_iv, boot_iv, kind, tol, note,
                max(ps) if ps else None)


def untestable_part(label: str, criterion: str, why: str) -> Part:
    """A part whose runs or measurements are missing, or that needs a person."""
    return Part(label, criterion, "not testable here", note=why)


def holm_does_not_hold(parts: Sequence[Part], alpha: float = ALPHA) -> list[Part]:
    """Holm's step-down over the tested parts' ``p_against``: the j-th smallest (j = 0..m-1) is
    rejected while ``p <= alpha / (m - j)``. A part judged "does not hold" at the unadjusted
    level that is not rejected becomes inconclusive, with a note."""
    tested = sorted((p.p_against, i) for i, p in enumerate(parts) if p.p_against is not None)
    m = len(tested)
    rejected: set[int] = set()
    for j, (p, i) in enumerate(tested):
        if p > alpha / (m - j):
            break
        rejected.add(i)
    out = []
    for i, p in enumerate(parts):
        if p.verdict == "does not hold" and i not in rejected:
            note = (f"below 0 at {CONFIDENCE:.0%} but not at Holm's level over {m} tested "
                    f"parts (p = {p.p_against:.3g})")
            p = replace(p, verdict="inconclusive", note=(p.note + "; " if p.note else "") + note)
        out.append(p)
    return out


def combine(parts: Sequence[Part]) -> Verdict:
    """A claim's verdict from its (Holm-adjusted) parts: does not hold if any part does not
    hold; else inconclusive if any is; else holds if all hold, partly holds if the others are
    not testable here; not testable here if none is."""
    verdicts = [p.verdict for p in parts]
    testable = [v for v in verdicts if v != "not testable here"]
    if not testable:
        return "not testable here"
    if "does not hold" in testable:
        return "does not hold"
    if "inconclusive" in testable:
        return "inconclusive"
    return "holds" if len(testable) == len(verdicts) else "partly holds"


# ---------------------------------------------------------------- curve and rank statistics


def window(n: int) -> int:
    """Epochs in "the last third": ``max(2, ceil(n / 3))``."""
    return max(2, math.ceil(n / 3))


def noise_sigma(values: Sequence[float]) -> float:
    """Robust SD of a curve's epoch-to-epoch fluctuation: ``median |second difference| /
    (0.6745 * sqrt(6))`` over its second half (at least 3 points). Second differences cancel
    a linear trend, so a steady creep is not counted as noise."""
    v = np.asarray(values, dtype=float)
    tail = v[min(len(v) // 2, max(len(v) - 3, 0)):]
    if len(tail) < 3:
        return float("nan")
    d2 = np.diff(tail, n=2)
    return float(np.median(np.abs(d2)) / (0.6745 * math.sqrt(6)))


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rho of each row pair of ``a``, ``b`` (shape (B, n)); NaN for constant rows."""
    ra, rb = stats.rankdata(a, axis=-1), stats.rankdata(b, axis=-1)
    ra = ra - ra.mean(-1, keepdims=True)
    rb = rb - rb.mean(-1, keepdims=True)
    den = np.sqrt((ra**2).sum(-1) * (rb**2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(-1) / den, np.nan)


def auroc_from_histograms(correct: np.ndarray, wrong: np.ndarray) -> np.ndarray:
    """AUROC of a score for "correct" from binned counts (..., bins), bins in increasing score:
    P(score of a correct pixel > that of a wrong one) + 0.5 P(same bin). NaN when a class is
    empty."""
    c, w = np.asarray(correct, float), np.asarray(wrong, float)
    w_below = np.cumsum(w, -1) - w  # wrong pixels in lower bins
    num = (c * (w_below + 0.5 * w)).sum(-1)
    den = c.sum(-1) * w.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)
