"""Verdicts on the paper's claims (docs/method.md#claims) from the run store's numbers, per seed.

Every claim is split into *parts* (sub-claims). Each part measures one **effect** per training
seed, signed so that a positive value is what the paper claims (its threshold, if any, is
subtracted, so 0 means "exactly at the threshold", i.e. no effect). The per-seed values give an
interval, and the interval gives the part's verdict:

- **seed interval**: the 95 % t-interval of the per-seed effects, ``mean +- t(0.975, n-1) *
  sd / sqrt(n)`` (needs n >= 2 seeds);
- **image bootstrap** (only parts with per-image evidence: claim 4's ranked images, claim 7's
  leaf pixels): the 95 % percentile interval of the seed-mean effect over ``N_BOOT`` resamples
  of the images of every seed (resampled with replacement, seeded with ``BOOT_SEED``).

A part **holds** when every interval it has lies above 0 (for "about equal" parts: inside
``(-tol, tol)``), **does not hold** when every interval lies below 0 (outside ``[-tol, tol]``),
and is **inconclusive** otherwise -- also when it has no interval at all: with one seed and no
per-image evidence nothing separates an effect from seed noise. (No criterion here is
deterministic: every number depends on the training seed.) A part is **not testable here** when
its runs or measurements are missing. A claim **does not hold** if any part does not hold; else
it is **inconclusive** if any part is; else it **holds** if every part holds and **partly holds**
if some parts hold and others are not testable; it is **not testable here** if no part is.

Inputs of :func:`evaluate_claims` (see its docstring): per-seed histories, ranked-image frames
and leaf outputs. Measurements come from elsewhere (``engine`` histories, ``analysis``); this
module only reduces them to effects and judges.

API::

    evaluate_claims(histories, galleries=None, leaf=None, top_k=16, ...) -> list[Claim]
    claim1(histories) ... claim7(histories, leaf)          # one function per claim
    claims_markdown(claims) -> str; claims_frame(claims) / parts_frame(claims) -> DataFrame
    write_claims(claims, path, title=...)                  # atomic write of the Markdown
    t_interval(values) -> (lo, hi) | None                   # the seed interval
    leaf_boundary_sums(probabilities, masks) -> DataFrame  # claim 7's per-image sums
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import ndimage, stats

from pspnet_core.atomic import atomic_write_text
from pspnet_core.metrics import leaf_pixel_stats

Verdict = Literal["holds", "does not hold", "partly holds", "inconclusive", "not testable here"]
VERDICTS: tuple[str, ...] = (
    "holds", "does not hold", "partly holds", "inconclusive", "not testable here"
)

# thresholds (each Part.criterion repeats the ones it uses)
GAP = 1.5  # claim 1: held-out / train loss at the end (mean of the last third) >= 1.5
NOISE_SIGMAS = 2.0  # claims 3, 5: "creeps up" = last-third mean - earlier minimum > 2 sigma
EQUAL_TOL = 0.10  # claim 5: "about equal" = held-out losses within a factor 1.10
MIN_RHO = 0.3  # claim 4(a): Spearman rho(loss, complexity) >= 0.3
FAR = 0.10  # claim 6: "far better" = at least 10 % better (mIoU higher, loss lower)
BAND_FRAC = 0.03  # claim 7: boundary band = within 3 % of the short image side of the label edge
BAND_MIN_PX = 2  # ... and at least 2 px
CONFIDENCE = 0.95  # both intervals
N_BOOT = 1000  # bootstrap resamples over images
BOOT_SEED = 0

AUGMENTED_PSPNET_RUNS = ("sgd_affine", "sgd_mix", "adam_affine", "adam_mix")

RULE = (
    "Each claim is split into parts; each part measures one effect per training seed, signed "
    "so that > 0 is what the paper claims (a stated threshold already subtracted). Interval: "
    f"the {CONFIDENCE:.0%} t-interval of the per-seed effects (mean +- t * sd / sqrt(n), "
    f"n >= 2 seeds) and, where per-image evidence exists (claims 4 and 7), the {CONFIDENCE:.0%} "
    f"percentile bootstrap of the seed-mean effect over {N_BOOT} resamples of the held-out "
    f"(and ranked training) images (seed {BOOT_SEED}). A part **holds** when every interval "
    "lies above 0 (\"about equal\": inside +-tol), **does not hold** when every interval lies "
    "below 0 (outside +-tol), and is **inconclusive** otherwise, including with one seed and no "
    "per-image evidence (no criterion is deterministic: every number depends on the seed). A "
    "claim does not hold if any part does not hold, else is inconclusive if any part is, else "
    "holds if all parts hold, partly holds if the others are not testable here."
)

CLAIM_TEXTS: dict[int, str] = {
    1: "Without augmentation, training loss falls but held-out loss stays high (overfitting), "
    "even with the backbone frozen; 1400 VOC images are not enough.",
    2: "Affine/blur augmentation lowers both training and held-out loss relative to none.",
    3: "With SGD, Mixup+CutMix gives the lowest held-out loss, but it creeps up slightly late "
    "in training (mild overfitting).",
    4: "Small, simple regions give low per-image loss; complex scenes give high loss; held-out "
    "images with high loss are segmented worse than training images with high loss.",
    5: "With Adam, affine/blur and Mixup+CutMix end up about equal, and the late overfitting of "
    "Mixup+CutMix disappears.",
    6: "PSPNet with augmentation is far better than the authors' earlier U-Net without "
    "augmentation.",
    7: "On leaf disease, the analog output marks uncertain regions with lower intensity; it finds "
    "some disease spots the human labels missed, and also makes errors (a human hand marked as "
    "disease, some disease missed).",
}


# ---------------------------------------------------------------- parts and claims


@dataclass(frozen=True)
class Part:
    """One sub-claim: its effect per seed, the intervals and the verdict they give.

    ``kind="greater"``: claimed effect > 0. ``kind="within"``: claimed ``|effect| < tol`` (the
    per-seed values are then signed differences).
    """

    label: str
    criterion: str
    verdict: Verdict
    per_seed: dict[int, float] = field(default_factory=dict)
    seed_interval: tuple[float, float] | None = None
    boot_interval: tuple[float, float] | None = None
    kind: Literal["greater", "within"] = "greater"
    tol: float = 0.0
    note: str = ""


@dataclass(frozen=True)
class Claim:
    """One claim of the paper (docs/method.md#claims) and what these runs say about it."""

    number: int
    text: str
    verdict: Verdict
    evidence: str
    criterion: str = ""
    parts: tuple[Part, ...] = ()
    seeds: tuple[int, ...] = ()

    @property
    def holds(self) -> bool | None:
        """True for holds, False for does not hold, None otherwise."""
        return {"holds": True, "does not hold": False}.get(self.verdict)


def t_interval(
    values: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float] | None:
    """``mean +- t((1+confidence)/2, n-1) * sd / sqrt(n)`` of finite ``values``; None if n < 2."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if len(v) < 2:
        return None
    m, sd = float(v.mean()), float(v.std(ddof=1))
    h = float(stats.t.ppf((1 + confidence) / 2, len(v) - 1)) * sd / math.sqrt(len(v))
    return (m - h, m + h)


def _percentile_interval(samples: np.ndarray, confidence: float = CONFIDENCE):
    s = samples[np.isfinite(samples)]
    if len(s) < 10:
        return None
    a = (1 - confidence) / 2
    return (float(np.quantile(s, a)), float(np.quantile(s, 1 - a)))


def _judge(iv: tuple[float, float], kind: str, tol: float) -> Verdict:
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


def _part(
    label: str,
    criterion: str,
    per_seed: Mapping[int, float],
    boot: tuple[float, float] | None = None,
    kind: Literal["greater", "within"] = "greater",
    tol: float = 0.0,
    note: str = "",
) -> Part:
    """A part from its per-seed effects (non-finite values dropped) and an optional bootstrap."""
    vals = {int(s): float(v) for s, v in per_seed.items() if np.isfinite(v)}
    if not vals:
        return _untestable_part(label, criterion, note or "no finite effect for any seed")
    seed_iv = t_interval(list(vals.values()))
    intervals = [iv for iv in (seed_iv, boot) if iv is not None]
    if not intervals:
        verdict: Verdict = "inconclusive"
        note = (note + "; " if note else "") + (
            "one seed and no per-image evidence: no interval, so inconclusive")
    else:
        found = {_judge(iv, kind, tol) for iv in intervals}
        verdict = found.pop() if len(found) == 1 else "inconclusive"
    return Part(label, criterion, verdict, vals, seed_iv, boot, kind, tol, note)


def _untestable_part(label: str, criterion: str, why: str) -> Part:
    return Part(label, criterion, "not testable here", note=why)


def _combine(parts: Sequence[Part]) -> Verdict:
    verdicts = [p.verdict for p in parts]
    testable = [v for v in verdicts if v != "not testable here"]
    if not testable:
        return "not testable here"
    if "does not hold" in testable:
        return "does not hold"
    if "inconclusive" in testable:
        return "inconclusive"
    return "holds" if len(testable) == len(verdicts) else "partly holds"


def _claim(n: int, parts: Sequence[Part], evidence: str) -> Claim:
    seeds = sorted({s for p in parts for s in p.per_seed})
    criterion = "; ".join(f"{p.label}: {p.criterion}" for p in parts)
    return Claim(n, CLAIM_TEXTS[n], _combine(parts), evidence, criterion, tuple(parts),
                 tuple(seeds))


# ---------------------------------------------------------------- inputs


Histories = Mapping[str, Any]  # run -> {seed: DataFrame} or run -> DataFrame (one seed)


def _by_seed(x: Any, label: int = 0) -> dict[int, pd.DataFrame]:
    """``{seed: frame}`` from a mapping seed -> frame or one frame (seed ``label``)."""
    if x is None:
        return {}
    if isinstance(x, pd.DataFrame):
        return {label: x} if len(x) else {}
    if isinstance(x, Mapping):
        return {int(s): df for s, df in x.items() if df is not None and len(df)}
    raise TypeError(f"expected a DataFrame or a mapping seed -> DataFrame, got {type(x)!r}")


def _runs(histories: Histories, names: Sequence[str]) -> dict[str, dict[int, pd.DataFrame]]:
    return {n: _by_seed(histories.get(n)) for n in names}


def _common_seeds(per_run: Mapping[str, Mapping[int, Any]]) -> list[int]:
    sets = [set(v) for v in per_run.values()]
    return sorted(set.intersection(*sets)) if sets else []


@dataclass(frozen=True)
class _Curve:
    """Summary numbers of one history (one run, one seed)."""

    epochs: int
    train_end: float  # mean of the last third (>= 2 epochs)
    ho_end: float
    train_best_before: float  # minimum over the epochs before the last third
    ho_best_before: float
    ho_min: float
    ho_min_epoch: int
    ho_final: float
    sigma: float  # epoch-to-epoch noise of the held-out loss (robust, trend-free)
    metric_end: dict[str, float]

    @property
    def creep(self) -> float:
        """(last-third mean - minimum before it - NOISE_SIGMAS * sigma) / that minimum, of the
        held-out loss. The minimum is taken *before* the last third: a curve still falling at
        the end has its minimum in the last epoch, which its last-third mean always exceeds."""
        m = self.ho_best_before
        if not m > 0:
            return float("nan")
        return (self.ho_end - m - NOISE_SIGMAS * self.sigma) / m


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


def _curve(hist: pd.DataFrame) -> _Curve | None:
    h = hist.sort_values("epoch")
    n = len(h)
    if n < 3:
        return None
    k = window(n)
    tr = h["train_loss"].astype(float).to_numpy()
    ho = h["heldout_loss"].astype(float).to_numpy()
    i = int(np.nanargmin(ho))
    metrics = {c: float(h[c].astype(float).iloc[-k:].mean())
               for c in h.columns if c.startswith("heldout_") and c != "heldout_loss"}
    return _Curve(
        epochs=n,
        train_end=float(tr[-k:].mean()),
        ho_end=float(ho[-k:].mean()),
        train_best_before=float(np.nanmin(tr[:-k])),
        ho_best_before=float(np.nanmin(ho[:-k])),
        ho_min=float(ho[i]),
        ho_min_epoch=int(h["epoch"].iloc[i]),
        ho_final=float(ho[-1]),
        sigma=noise_sigma(ho),
        metric_end=metrics,
    )


def _curves(per_seed: Mapping[int, pd.DataFrame]) -> dict[int, _Curve]:
    out = {}
    for s, df in per_seed.items():
        c = _curve(df)
        if c is not None:
            out[s] = c
    return out


def _f(x: float) -> str:
    return f"{x:.4g}"


def _ms(values: Sequence[float]) -> str:
    """``mean +- sd (n seeds)`` (sd over seeds; just the value for one seed)."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return "n/a"
    if len(v) == 1:
        return f"{_f(v[0])} (1 seed)"
    return f"{_f(v.mean())} +- {_f(v.std(ddof=1))} ({len(v)} seeds)"


def _log_ratio(a: float, b: float) -> float:
    return math.log(max(a, 1e-12) / max(b, 1e-12))


def _missing_claim(n: int, labels_criteria: Sequence[tuple[str, str]], why: str) -> Claim:
    parts = [_untestable_part(lab, crit, why) for lab, crit in labels_criteria]
    return _claim(n, parts, why)


# ---------------------------------------------------------------- claims 1-3, 5, 6: histories


def claim1(histories: Histories, run: str = "sgd_none") -> Claim:
    """Overfitting without augmentation: held-out stalls while training improves; a large gap."""
    crit = {
        "(a) held-out loss plateaus or rises": (
            f"{run}: mean held-out loss of the last third of the epochs / its minimum over the "
            "epochs before - 1 > 0 (no longer improves on its earlier best)"),
        "(b) training loss keeps falling": (
            f"{run}: 1 - mean training loss of the last third / its minimum over the epochs "
            "before > 0 (still improves on its earlier best, same window)"),
        "(c) the final gap is large": (
            f"{run}: ln(held-out / training loss, both means of the last third) - ln {GAP:g} "
            "> 0"),
    }
    curves = _curves(_runs(histories, [run])[run])
    if not curves:
        return _missing_claim(1, list(crit.items()), f"run {run} is missing (or < 3 epochs)")
    a = {s: c.ho_end / c.ho_best_before - 1 for s, c in curves.items()}
    b = {s: 1 - c.train_end / c.train_best_before for s, c in curves.items()}
    g = {s: _log_ratio(c.ho_end, c.train_end) - math.log(GAP) for s, c in curves.items()}
    labels = list(crit)
    parts = [_part(labels[0], crit[labels[0]], a), _part(labels[1], crit[labels[1]], b),
             _part(labels[2], crit[labels[2]], g)]
    cs = list(curves.values())
    evidence = (
        f"{run}, last third = {window(cs[0].epochs)} of {cs[0].epochs} epochs: training loss "
        f"{_ms([c.train_end for c in cs])} (best before {_ms([c.train_best_before for c in cs])}); "
        f"held-out {_ms([c.ho_end for c in cs])} (best before "
        f"{_ms([c.ho_best_before for c in cs])}); held-out / training "
        f"{_ms([c.ho_end / c.train_end for c in cs])}. (Data size and frozen backbone are the "
        "preset's, not varied.)"
    )
    return _claim(1, parts, evidence)


def claim2(histories: Histories, none: str = "sgd_none", affine: str = "sgd_affine") -> Claim:
    """Affine/blur lowers both losses relative to no augmentation (seeds paired)."""
    crit = {
        "(a) lower training loss": (
            f"ln(training loss {none} / {affine}), means of the last third, same seed, > 0"),
        "(b) lower held-out loss": (
            f"ln(held-out loss {none} / {affine}), means of the last third, same seed, > 0"),
    }
    runs = {k: _curves(v) for k, v in _runs(histories, [none, affine]).items()}
    seeds = _common_seeds(runs)
    if not seeds:
        miss = [r for r, c in runs.items() if not c]
        why = f"run(s) {', '.join(miss) or none + '/' + affine} missing or with no common seed"
        return _missing_claim(2, list(crit.items()), why)
    n, a = runs[none], runs[affine]
    tr = {s: _log_ratio(n[s].train_end, a[s].train_end) for s in seeds}
    ho = {s: _log_ratio(n[s].ho_end, a[s].ho_end) for s in seeds}
    labels = list(crit)
    parts = [_part(labels[0], crit[labels[0]], tr), _part(labels[1], crit[labels[1]], ho)]
    evidence = (
        f"training loss (last third): {affine} {_ms([a[s].train_end for s in seeds])} vs {none} "
        f"{_ms([n[s].train_end for s in seeds])}; held-out: {affine} "
        f"{_ms([a[s].ho_end for s in seeds])} vs {none} {_ms([n[s].ho_end for s in seeds])}"
    )
    return _claim(2, parts, evidence)


def _creep_text(run: str) -> str:
    return (
        f"{run}: (mean held-out loss of the last third - its minimum over the epochs before - "
        f"{NOISE_SIGMAS:g} sigma) / that minimum, sigma = the curve's epoch-to-epoch noise "
        "(median |second difference| / (0.6745 sqrt 6) over its second half)"
    )


def claim3(
    histories: Histories,
    mix: str = "sgd_mix",
    others: Sequence[str] = ("sgd_none", "sgd_affine"),
) -> Claim:
    """SGD: Mixup+CutMix has the lowest held-out loss, then creeps up beyond the noise."""
    crit = {
        "(a) lowest held-out loss": (
            f"min over {', '.join(others)} of ln(their minimum held-out loss / that of {mix}), "
            "same seed, > 0"),
        "(b) creeps up late": _creep_text(mix) + " > 0",
    }
    labels = list(crit)
    runs = {k: _curves(v) for k, v in _runs(histories, [mix, *others]).items()}
    m = runs[mix]
    present = [o for o in others if runs[o]]
    if not m:
        return _missing_claim(3, list(crit.items()), f"run {mix} is missing (or < 3 epochs)")
    parts = []
    if present:
        seeds = _common_seeds({k: runs[k] for k in (mix, *present)})
        lowest = {s: min(_log_ratio(runs[o][s].ho_min, m[s].ho_min) for o in present)
                  for s in seeds}
        parts.append(_part(labels[0], crit[labels[0]], lowest,
                           note="" if seeds else "no seed common to all runs"))
    else:
        parts.append(_untestable_part(labels[0], crit[labels[0]],
                                      f"needs at least one of {', '.join(others)}"))
    parts.append(_part(labels[1], crit[labels[1]], {s: c.creep for s, c in m.items()}))
    evidence = (
        f"minimum held-out loss: {mix} {_ms([c.ho_min for c in m.values()])}, "
        + ", ".join(f"{o} {_ms([c.ho_min for c in runs[o].values()])}" for o in present)
        + f"; {mix}: epoch of the minimum "
        + ", ".join(f"s{s} {c.ho_min_epoch}/{c.epochs}" for s, c in m.items())
        + f", last-third mean {_ms([c.ho_end for c in m.values()])}, noise sigma "
        f"{_ms([c.sigma for c in m.values()])}"
    )
    return _claim(3, parts, evidence)


def claim5(
    histories: Histories, affine: str = "adam_affine", mix: str = "adam_mix"
) -> Claim:
    """Adam: affine and mix end about equal, and mix no longer creeps up."""
    tol = math.log(1 + EQUAL_TOL)
    crit = {
        "(a) about equal": (
            f"ln(held-out loss {affine} / {mix}), means of the last third, same seed: interval "
            f"inside +-ln(1 + {EQUAL_TOL:g}) = +-{tol:.4f}"),
        "(b) no late rise": "-[" + _creep_text(mix) + "] > 0 (the claim 3(b) effect is below 0)",
    }
    labels = list(crit)
    runs = {k: _curves(v) for k, v in _runs(histories, [affine, mix]).items()}
    miss = [r for r, c in runs.items() if not c]
    if miss:
        return _missing_claim(5, list(crit.items()), f"run(s) {', '.join(miss)} missing")
    a, m = runs[affine], runs[mix]
    seeds = _common_seeds(runs)
    diff = {s: _log_ratio(a[s].ho_end, m[s].ho_end) for s in seeds}
    parts = [
        _part(labels[0], crit[labels[0]], diff, kind="within", tol=tol),
        _part(labels[1], crit[labels[1]], {s: -c.creep for s, c in m.items()}),
    ]
    evidence = (
        f"held-out loss (last third): {affine} {_ms([a[s].ho_end for s in seeds])}, {mix} "
        f"{_ms([m[s].ho_end for s in seeds])}; {mix}: epoch of the minimum "
        + ", ".join(f"s{s} {c.ho_min_epoch}/{c.epochs}" for s, c in m.items())
        + f", creep effect {_ms([c.creep for c in m.values()])}"
    )
    return _claim(5, parts, evidence)


def claim6(
    histories: Histories | None = None,
    unet: str = "unet_none",
    candidates: Sequence[str] = AUGMENTED_PSPNET_RUNS,
    metric: str = "heldout_miou",
) -> Claim:
    """PSPNet with augmentation vs the U-Net without: the best augmented run, per seed."""
    crit = {
        "(a) higher held-out mIoU": (
            f"ln({metric} of the best augmented PSPNet run / that of {unet}), means of the "
            f"last third, same seed, - ln(1 + {FAR:g}) > 0 (at least {FAR:.0%} higher)"),
        "(b) lower held-out loss": (
            f"ln(held-out loss of {unet} / that of the best augmented PSPNet run), same "
            f"seed, - ln(1 + {FAR:g}) > 0 (at least {FAR:.0%} lower)"),
    }
    labels = list(crit)
    histories = histories or {}
    u = _curves(_by_seed(histories.get(unet)))
    cands = {c: _curves(_by_seed(histories.get(c))) for c in candidates}
    cands = {c: v for c, v in cands.items() if v and set(v) & set(u)}
    if not u or not cands:
        why = (f"run {unet} (the U-Net baseline) is missing" if not u else
               f"no augmented PSPNet run ({', '.join(candidates)}) with a seed of {unet}")
        return _missing_claim(6, list(crit.items()), why)

    def score(c: str) -> float:  # the best run: highest mean end-of-training metric
        v = [x.metric_end.get(metric, float("nan")) for x in cands[c].values()]
        v = [x for x in v if np.isfinite(x)]
        return float(np.mean(v)) if v else -float("inf")

    best = max(cands, key=score)
    b = cands[best]
    seeds = sorted(set(b) & set(u))
    miou = {s: _log_ratio(b[s].metric_end.get(metric, float("nan")),
                          u[s].metric_end.get(metric, float("nan"))) - math.log(1 + FAR)
            if metric in b[s].metric_end and metric in u[s].metric_end else float("nan")
            for s in seeds}
    loss = {s: _log_ratio(u[s].ho_end, b[s].ho_end) - math.log(1 + FAR) for s in seeds}
    parts = [_part(labels[0], crit[labels[0]], miou), _part(labels[1], crit[labels[1]], loss)]
    evidence = (
        f"best augmented PSPNet run (highest mean {metric}): {best}; {metric} (last third) "
        f"{best} {_ms([b[s].metric_end.get(metric, float('nan')) for s in seeds])} vs {unet} "
        f"{_ms([u[s].metric_end.get(metric, float('nan')) for s in seeds])}; held-out loss "
        f"{best} {_ms([b[s].ho_end for s in seeds])} vs {unet} "
        f"{_ms([u[s].ho_end for s in seeds])}. The best run is chosen on the same numbers."
    )
    return _claim(6, parts, evidence)


# ---------------------------------------------------------------- claim 4: ranked images


def _gallery_frame(galleries: Any) -> pd.DataFrame | None:
    """One frame from a frame, a dict split -> frame, or a list of frames."""
    if galleries is None:
        return None
    if isinstance(galleries, pd.DataFrame):
        return galleries
    if isinstance(galleries, Mapping):
        frames = []
        for split, df in galleries.items():
            df = df.copy()
            if "split" not in df:
                df["split"] = split
            frames.append(df)
        return pd.concat(frames, ignore_index=True) if frames else None
    return pd.concat(list(galleries), ignore_index=True)


def _galleries_by_seed(galleries: Any, seed: int | None) -> dict[int, pd.DataFrame]:
    """``{seed: frame}``: a mapping seed -> (frame or {split: frame}), or one gallery."""
    if galleries is None:
        return {}
    if isinstance(galleries, Mapping) and galleries and all(
        isinstance(k, (int, np.integer)) for k in galleries
    ):
        out = {int(s): _gallery_frame(g) for s, g in galleries.items()}
        return {s: f for s, f in out.items() if f is not None and len(f)}
    frame = _gallery_frame(galleries)
    return {int(seed or 0): frame} if frame is not None and len(frame) else {}


def _rank_rows(x: np.ndarray) -> np.ndarray:
    return stats.rankdata(x, axis=-1)


def _spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rho of each row pair of ``a``, ``b`` (shape (B, n)); NaN for constant rows."""
    ra, rb = _rank_rows(a), _rank_rows(b)
    ra = ra - ra.mean(-1, keepdims=True)
    rb = rb - rb.mean(-1, keepdims=True)
    den = np.sqrt((ra**2).sum(-1) * (rb**2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(-1) / den, np.nan)


def _matched_rank_gap(lt, mt, lh, mh, k: int) -> np.ndarray:
    """Rows: mean over ranks i < k of metric(train rank i) - metric(held-out rank i), ranks by
    loss, highest first. Inputs (B, n_train) / (B, n_heldout)."""
    ot = np.argsort(-lt, axis=-1, kind="stable")[:, :k]
    oh = np.argsort(-lh, axis=-1, kind="stable")[:, :k]
    return (np.take_along_axis(mt, ot, -1) - np.take_along_axis(mh, oh, -1)).mean(-1)


def _bootstrap_mean(
    effects: Mapping[int, Callable[[np.random.Generator, int], np.ndarray]], n_boot: int
) -> tuple[float, float] | None:
    """Percentile interval of the seed-mean effect; ``effects[seed](rng, n_boot)`` returns the
    seed's effect on ``n_boot`` image resamples."""
    if not effects or n_boot < 10:
        return None
    rng = np.random.default_rng(BOOT_SEED)
    draws = np.stack([fn(rng, n_boot) for _, fn in sorted(effects.items())])  # (seeds, B)
    return _percentile_interval(draws.mean(0))


def claim4(
    galleries: Any,
    top_k: int = 16,
    complexity_column: str | None = None,
    metric_column: str | None = None,
    seed: int | None = None,
    n_boot: int = N_BOOT,
) -> Claim:
    """Per-image loss vs scene complexity; at matched loss rank, the highest-loss held-out images
    are segmented worse (per-image mIoU) than the highest-loss training images.

    ``galleries``: ``{seed: frame or {split: frame}}`` or one gallery (of seed ``seed``); frames
    as :func:`pspnet_core.analysis.ranked_losses` gives them (index, id, loss, miou, pixel_acc,
    complexity, split).
    """
    crit = {
        "(a) loss grows with complexity": (
            f"Spearman rho(per-image loss, complexity) over all ranked images - {MIN_RHO:g} > 0"),
        "(b) high-loss held-out images segmented worse": (
            f"mean over ranks i = 1..{top_k} (by loss, highest first, per split) of "
            "per-image mIoU of training image i - that of held-out image i, > 0"),
    }
    labels = list(crit)
    frames = _galleries_by_seed(galleries, seed)
    frames = {s: f for s, f in frames.items() if {"loss", "split"} <= set(f.columns)}
    if not frames:
        return _missing_claim(4, list(crit.items()),
                              "no per-image losses (ranked_losses frames with loss, split)")
    parts, ev = [], []
    # (a)
    col = complexity_column or next(
        (c for c in ("complexity", "boundary_fraction", "n_classes")
         if all(c in f for f in frames.values())), None)
    if col is None:
        parts.append(_untestable_part(labels[0], crit[labels[0]], "no complexity column"))
    else:
        data = {s: (f["loss"].astype(float).to_numpy(), f[col].astype(float).to_numpy())
                for s, f in frames.items()}
        rho = {s: float(_spearman_rows(lo[None], cx[None])[0]) for s, (lo, cx) in data.items()}

        def boot_a(lo, cx):
            def fn(rng, b):
                idx = rng.integers(0, len(lo), (b, len(lo)))
                return _spearman_rows(lo[idx], cx[idx]) - MIN_RHO
            return fn

        boot = _bootstrap_mean({s: boot_a(*d) for s, d in data.items() if len(d[0]) >= 3},
                               n_boot)
        parts.append(_part(labels[0], crit[labels[0]], {s: r - MIN_RHO for s, r in rho.items()},
                           boot))
        ev.append(f"(a) Spearman rho(loss, {col}) {_ms(list(rho.values()))}")
    # (b)
    mcol = metric_column or next(
        (c for c in ("miou", "pixel_acc") if all(c in f for f in frames.values())), None)
    split_data = {}
    for s, f in frames.items():
        t, h = f[f["split"] == "train"], f[f["split"] == "heldout"]
        if len(t) and len(h) and mcol is not None:
            split_data[s] = tuple(np.asarray(x[c], dtype=float)
                                  for x in (t, h) for c in ("loss", mcol))
    if mcol is None:
        parts.append(_untestable_part(
            labels[1], crit[labels[1]],
            "no per-image mIoU or pixel accuracy column (analysis.ranked_losses adds them)"))
    elif not split_data:
        parts.append(_untestable_part(labels[1], crit[labels[1]],
                                      "needs ranked images of both train and heldout"))
    else:
        ks = {s: min(top_k, len(d[0]), len(d[2])) for s, d in split_data.items()}
        gap = {s: float(_matched_rank_gap(lt[None], mt[None], lh[None], mh[None], ks[s])[0])
               for s, (lt, mt, lh, mh) in split_data.items()}

        def boot_b(lt, mt, lh, mh, k):
            def fn(rng, b):
                it = rng.integers(0, len(lt), (b, len(lt)))
                ih = rng.integers(0, len(lh), (b, len(lh)))
                return _matched_rank_gap(lt[it], mt[it], lh[ih], mh[ih], k)
            return fn

        boot = _bootstrap_mean({s: boot_b(*d, ks[s]) for s, d in split_data.items()}, n_boot)
        crit_b = crit[labels[1]] if mcol == "miou" else crit[labels[1]].replace(
            "mIoU", mcol.replace("_", " "))
        parts.append(_part(labels[1], crit_b, gap, boot))
        top = {s: (float(d[1][np.argsort(-d[0], kind="stable")[:ks[s]]].mean()),
                   float(d[3][np.argsort(-d[2], kind="stable")[:ks[s]]].mean()))
               for s, d in split_data.items()}
        ev.append(
            f"(b) per-image {mcol} of the {', '.join(f's{s} {k}' for s, k in ks.items())} "
            f"highest-loss images: training {_ms([t for t, _ in top.values()])}, held-out "
            f"{_ms([h for _, h in top.values()])}"
        )
    n_img = {s: len(f) for s, f in frames.items()}
    ev.append("ranked images per seed: " + ", ".join(f"s{s} {n}" for s, n in n_img.items()))
    return _claim(4, parts, "; ".join(ev))


# ---------------------------------------------------------------- claim 7: leaf pixels


def band_width(shape: Sequence[int]) -> int:
    """Claim 7's boundary band in pixels for images of ``shape`` (..., H, W)."""
    return max(BAND_MIN_PX, round(BAND_FRAC * min(shape[-2:])))


def leaf_boundary_sums(probabilities: Any, masks: Any, band: int | None = None) -> pd.DataFrame:
    """Per image: confidence ``|2p - 1|`` summed over the label's boundary band (pixels within
    ``band`` px of the mask edge, either side; Euclidean distance) and over the rest, with pixel
    counts, and mean p in the four zones (inside/outside x band/far).

    Columns: band_sum, band_n, far_sum, far_n, p_in_band, p_in_far, p_out_band, p_out_far. An
    image with an empty (or full) mask has no edge: all its pixels are "far".
    """
    p = np.asarray(probabilities, dtype=np.float64)
    m = np.asarray(masks, dtype=np.float64) > 0.5
    if p.ndim == 2:
        p, m = p[None], m[None]
    if p.shape != m.shape:
        raise ValueError(f"probabilities {p.shape} and masks {m.shape} differ in shape")
    w = band if band is not None else band_width(p.shape)
    rows = []
    for pi, mi in zip(p, m, strict=True):
        if mi.any() and not mi.all():
            dist = np.where(mi, ndimage.distance_transform_edt(mi),
                            ndimage.distance_transform_edt(~mi))
            near = dist <= w
        else:
            near = np.zeros(mi.shape, dtype=bool)
        conf = np.abs(2 * pi - 1)

        def mean(sel, pi=pi):
            return float(pi[sel].mean()) if sel.any() else float("nan")

        rows.append({
            "band_sum": float(conf[near].sum()), "band_n": int(near.sum()),
            "far_sum": float(conf[~near].sum()), "far_n": int((~near).sum()),
            "p_in_band": mean(mi & near), "p_in_far": mean(mi & ~near),
            "p_out_band": mean(~mi & near), "p_out_far": mean(~mi & ~near),
        })
    return pd.DataFrame(rows)


def _confidence_gap(sums: pd.DataFrame, idx: np.ndarray | None = None) -> np.ndarray | float:
    """Pooled mean confidence far from the edge - in the band (rows of ``idx`` (B, n))."""
    cols = [sums[c].to_numpy(dtype=float) for c in ("band_sum", "band_n", "far_sum", "far_n")]
    if idx is None:
        bs, bn, fs, fn = (c.sum() for c in cols)
    else:
        bs, bn, fs, fn = (c[idx].sum(-1) for c in cols)
    with np.errstate(invalid="ignore", divide="ignore"):
        return fs / fn - bs / bn


def _leaf_by_seed(leaf: Any, seed: int | None) -> dict[int, Mapping[str, Any]]:
    if leaf is None:
        return {}
    if isinstance(leaf, Mapping) and leaf and all(
        isinstance(k, (int, np.integer)) for k in leaf
    ):
        return {int(s): v for s, v in leaf.items() if v is not None}
    if isinstance(leaf, Mapping):
        return {int(seed or 0): leaf}
    raise TypeError(f"leaf: expected a mapping, got {type(leaf)!r}")


def claim7(
    histories: Histories | None = None,
    leaf: Any = None,
    run: str = "leaf_sgd_affine",
    seed: int | None = None,
    n_boot: int = N_BOOT,
) -> Claim:
    """Leaf disease: lower intensity near the label's edge (testable); spots the labels missed and
    model errors (need a human: not testable here), so at most *partly holds*.

    ``leaf``: ``{seed: analysis.leaf_outputs(run)}`` or one such dict (of seed ``seed``); each
    needs ``probabilities`` (N, H, W) in [0, 1] and ``masks`` (N, H, W) {0, 1}.
    """
    crit = {
        "(a) lower intensity where uncertain": (
            f"confidence |2p - 1| over the whole range of p: mean over pixels farther than the "
            f"boundary band (max({BAND_MIN_PX}, {BAND_FRAC:g} x short side) px, Euclidean) from "
            "the label's edge - mean over pixels in the band, held-out leaves pooled, > 0"),
        "(b) finds spots the labels missed": (
            "needs human review of predicted-disease pixels outside the mask"),
        "(c) errors (a hand marked, disease missed)": (
            "needs human review: a pixel outside the mask is a missed label or an error"),
    }
    labels = list(crit)
    items = _leaf_by_seed(leaf, seed)
    sums = {s: leaf_boundary_sums(v["probabilities"], v["masks"]) for s, v in items.items()
            if "probabilities" in v and "masks" in v}
    ev = []
    if not sums:
        why = ("no leaf outputs with probabilities and masks (analysis.leaf_outputs)"
               if not items else "leaf statistics without probabilities and masks")
        parts = [_untestable_part(labels[0], crit[labels[0]], why)]
    else:
        gap = {s: float(_confidence_gap(d)) for s, d in sums.items()}

        def boot(d):
            def fn(rng, b):
                return _confidence_gap(d, rng.integers(0, len(d), (b, len(d))))
            return fn

        parts = [_part(labels[0], crit[labels[0]], gap,
                       _bootstrap_mean({s: boot(d) for s, d in sums.items()}, n_boot))]
        zones = {z: _ms([float(np.nanmean(d[z])) for d in sums.values()])
                 for z in ("p_in_far", "p_in_band", "p_out_band", "p_out_far")}
        ev.append(
            "mean p inside the mask far from / near its edge: "
            f"{zones['p_in_far']} / {zones['p_in_band']}; outside near / far: "
            f"{zones['p_out_band']} / {zones['p_out_far']}; band "
            + ", ".join(f"s{s} {band_width(np.shape(items[s]['probabilities']))} px"
                        for s in sums)
        )
        st = [items[s].get("stats") or leaf_pixel_stats(items[s]["probabilities"],
                                                         items[s]["masks"]) for s in sums]
        ev.append(
            f"pixel Dice {_ms([x['dice'] for x in st])}; predicted-disease pixels outside the "
            f"mask {_ms([x['outside_fraction'] for x in st])}; mask pixels missed "
            f"{_ms([x['missed_fraction'] for x in st])}"
        )
    why_h = "whether pixels outside the mask are spots the labels missed or errors needs a human"
    parts += [_untestable_part(labels[1], crit[labels[1]], why_h),
              _untestable_part(labels[2], crit[labels[2]], why_h)]
    if histories is not None:
        curves = _curves(_by_seed(histories.get(run)))
        for key in ("heldout_dice", "heldout_iou"):
            v = [c.metric_end[key] for c in curves.values() if key in c.metric_end]
            if v:
                ev.append(f"{run} {key} (last third) {_ms(v)}")
    return _claim(7, parts, "; ".join(ev) or "no leaf data")


# ---------------------------------------------------------------- all claims


def evaluate_claims(
    histories: Histories,
    galleries: Any = None,
    leaf: Any = None,
    top_k: int = 16,
    *,
    gallery_seed: int | None = None,
    leaf_seed: int | None = None,
    n_boot: int = N_BOOT,
) -> list[Claim]:
    """All seven claims, in order, each judged per seed (module docstring: the interval rule).

    Args:
        histories: ``{run name: {seed: history DataFrame}}`` (engine.fit's history.csv
            columns; e.g. ``{name: {s: r.history for s, r in engine.get_runs(cfg, name,
            train=False).items()}}``). A plain DataFrame instead of the inner dict counts as one
            seed (labelled 0). Cross-run comparisons pair runs by seed (seeds common to both).
        galleries: claim 4's ranked images, ``{seed: {"train": frame, "heldout": frame}}`` (or
            ``{seed: frame}`` with a ``split`` column), frames from
            ``analysis.ranked_losses(run, split, n, seed)`` of the ``sgd_mix`` run of that seed;
            or one gallery (without the seed level) of the seed ``gallery_seed``.
        leaf: claim 7's leaf outputs, ``{seed: analysis.leaf_outputs(leaf run of that seed)}``,
            or one such dict of the seed ``leaf_seed``.
        top_k: claim 4(b)'s number of highest-loss images per split (the gallery size).
        n_boot: bootstrap resamples over images (claims 4 and 7).

    Returns:
        ``Claim`` objects (``verdict``, ``parts`` with per-seed effects and intervals,
        ``criterion``, ``evidence``); :func:`claims_markdown` / :func:`write_claims` print them.
    """
    return [
        claim1(histories),
        claim2(histories),
        claim3(histories),
        claim4(galleries, top_k=top_k, seed=gallery_seed, n_boot=n_boot),
        claim5(histories),
        claim6(histories),
        claim7(histories, leaf, seed=leaf_seed, n_boot=n_boot),
    ]


# ---------------------------------------------------------------- output


def _iv(iv: tuple[float, float] | None) -> str:
    return f"[{iv[0]:+.4g}, {iv[1]:+.4g}]" if iv is not None else "-"


def _per_seed_text(p: Part) -> str:
    return ", ".join(f"s{s} {v:+.4g}" for s, v in sorted(p.per_seed.items())) or "-"


def claims_frame(claims: Sequence[Claim]) -> pd.DataFrame:
    """One row per claim: number, text, verdict, seeds, criterion, evidence."""
    return pd.DataFrame([
        {"number": c.number, "text": c.text, "verdict": c.verdict,
         "seeds": ", ".join(map(str, c.seeds)), "criterion": c.criterion, "evidence": c.evidence}
        for c in claims
    ])


def parts_frame(claims: Sequence[Claim]) -> pd.DataFrame:
    """One row per part: claim number, part, verdict, per-seed effects, both intervals."""
    rows = []
    for c in claims:
        for p in c.parts:
            rows.append({
                "number": c.number, "part": p.label, "verdict": p.verdict,
                "per_seed": _per_seed_text(p),
                "seed_lo": p.seed_interval[0] if p.seed_interval else np.nan,
                "seed_hi": p.seed_interval[1] if p.seed_interval else np.nan,
                "boot_lo": p.boot_interval[0] if p.boot_interval else np.nan,
                "boot_hi": p.boot_interval[1] if p.boot_interval else np.nan,
                "note": p.note,
            })
    return pd.DataFrame(rows)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def claims_markdown(claims: Sequence[Claim]) -> str:
    """The rule, a summary table (claim, verdict, seeds), and per claim a table of its parts:
    criterion, per-seed effects, the 95 % t-interval over seeds, the image bootstrap, verdict."""
    out = [f"**Rule.** {RULE}", "",
           "| # | claim of the paper | verdict | seeds |", "|---|---|---|---|"]
    for c in claims:
        seeds = ", ".join(map(str, c.seeds)) or "-"
        out.append(f"| {c.number} | {_cell(c.text)} | **{c.verdict}** | {seeds} |")
    for c in claims:
        out += ["", f"## Claim {c.number}: {c.verdict}", "", f"> {_cell(c.text)}", "",
                "| part | criterion (effect > 0 = as claimed) | per seed | "
                f"{CONFIDENCE:.0%} t-interval (seeds) | {CONFIDENCE:.0%} bootstrap (images) | "
                "verdict |",
                "|---|---|---|---|---|---|"]
        for p in c.parts:
            crit = p.criterion + (f" ({p.note})" if p.note else "")
            out.append(
                f"| {_cell(p.label)} | {_cell(crit)} | {_per_seed_text(p)} | "
                f"{_iv(p.seed_interval)} | {_iv(p.boot_interval)} | {p.verdict} |"
            )
        out += ["", f"Evidence: {_cell(c.evidence)}"]
    return "\n".join(out) + "\n"


def write_claims(
    claims: Sequence[Claim], path: str | Path, title: str | None = "Claims of the paper, checked"
) -> Path:
    """Write :func:`claims_markdown` (with an optional heading) to ``path`` atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = (f"# {title}\n\n" if title else "") + claims_markdown(claims)
    atomic_write_text(target, text)
    return target
