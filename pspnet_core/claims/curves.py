"""Claims 1, 2, 3, 5 and 6: criteria on the per-epoch histories (docs/method.md#claims).

Every criterion is one effect per seed, > 0 as the paper claims (stated thresholds and
tolerances subtracted, no noise margin); :mod:`pspnet_core.claims.statistics` turns the
effects into verdicts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pspnet_core.claims.statistics import (
    Claim,
    Part,
    combine,
    holm_does_not_hold,
    make_part,
    noise_sigma,
    untestable_part,
    window,
)
from pspnet_core.config import ADAM_AFFINE, ADAM_MIX, SGD_AFFINE, SGD_MIX, SGD_NONE, UNET_RUN

GAP = 1.5  # claim 1(b): held-out / train loss at the end (mean of the last third) >= 1.5
STAY_SHARE = 0.5  # claim 1(a): "stays high" = held-out falls < half as much as training (log)
EQUAL_TOL = 0.10  # claim 5(a): "about equal" = held-out losses within a factor 1.10
RISE_TOL = 0.05  # claim 5(b): "no late rise" = late rise below 5 % (ln(1.05) on the log scale)
FAR = 0.10  # claim 6: "far better" = at least 10 % better (mIoU higher, loss lower)

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

Histories = Mapping[str, Any]  # run -> {seed: DataFrame} or run -> DataFrame (one seed)


def build_claim(n: int, parts: Sequence[Part], evidence: str,
                context: Sequence[Part] = ()) -> Claim:
    """Claim ``n`` from its parts (Holm-adjusted, then combined) and evidence."""
    parts = holm_does_not_hold(parts)
    seeds = sorted({s for p in parts for s in p.per_seed})
    criterion = "; ".join(f"{p.label}: {p.criterion}" for p in parts)
    return Claim(n, CLAIM_TEXTS[n], combine(parts), evidence, criterion, tuple(parts),
                 tuple(seeds), tuple(context))


def missing_claim(n: int, labels_criteria: Sequence[tuple[str, str]], why: str) -> Claim:
    return build_claim(n, [untestable_part(lab, crit, why) for lab, crit in labels_criteria],
                       why)


def by_seed(x: Any, label: int = 0) -> dict[int, pd.DataFrame]:
    """``{seed: frame}`` from a mapping seed -> frame or one frame (seed ``label``)."""
    if x is None:
        return {}
    if isinstance(x, pd.DataFrame):
        return {label: x} if len(x) else {}
    if isinstance(x, Mapping):
        return {int(s): df for s, df in x.items() if df is not None and len(df)}
    raise TypeError(f"expected a DataFrame or a mapping seed -> DataFrame, got {type(x)!r}")


def common_seeds(per_run: Mapping[str, Mapping[int, Any]]) -> list[int]:
    sets = [set(v) for v in per_run.values()]
    return sorted(set.intersection(*sets)) if sets else []


CLEAN_TRAIN_LOSS = "train_clean_loss"  # eval mode, no augmentation (issue 26)
RUNNING_TRAIN_LOSS = "train_loss"  # running mean over augmented batches in train mode


def train_loss_column(hist: pd.DataFrame) -> str:
    """The training loss claims 1-3 read: ``train_clean_loss`` (an eval-mode pass without
    augmentation, measured like the held-out loss) where the history logs it, else
    ``train_loss`` (older histories: the running mean over augmented batches in train
    mode)."""
    if CLEAN_TRAIN_LOSS in hist and np.isfinite(
            hist[CLEAN_TRAIN_LOSS].to_numpy(dtype=float)).any():
        return CLEAN_TRAIN_LOSS
    return RUNNING_TRAIN_LOSS


@dataclass(frozen=True)
class Curve:
    """Summary numbers of one history (one run, one seed). "End" = the mean of the last third
    (:func:`window` epochs); "mid" = the mean of the same number of epochs just before it;
    "early" = the mean of the first as many epochs. Means, not minima: a minimum of noisy
    points is biased low. The training loss is the column :func:`train_loss_column` names."""

    epochs: int
    train_end: float
    ho_end: float
    train_mid: float
    ho_mid: float
    train_early: float
    ho_early: float
    ho_min: float
    ho_min_epoch: int
    sigma: float  # epoch-to-epoch noise of the held-out loss (robust, trend-free)
    train_sigma: float
    metric_end: dict[str, float]
    train_column: str = RUNNING_TRAIN_LOSS

    @property
    def rise(self) -> float:
        """Late rise of the held-out loss (claims 3(b), 5(b), 5(c)): ln(last-third mean /
        mean of the epochs just before it). A curve still falling at the end has a negative
        rise; a flat one, 0 on average (both levels are means of as many noisy epochs)."""
        return log_ratio(self.ho_end, self.ho_mid)

    @property
    def gap(self) -> float:
        """ln(held-out / training loss), both last-third means."""
        return log_ratio(self.ho_end, self.train_end)


def curve(hist: pd.DataFrame) -> Curve | None:
    h = hist.sort_values("epoch")
    n = len(h)
    if n < 3:
        return None
    k = window(n)
    mid = slice(max(0, n - 2 * k), n - k)
    column = train_loss_column(h)
    tr = h[column].to_numpy(dtype=float)
    ho = h["heldout_loss"].to_numpy(dtype=float)
    i = int(np.nanargmin(ho))
    metrics = {c: _mean(h[c].to_numpy(dtype=float)[-k:])
               for c in h.columns if c.startswith("heldout_") and c != "heldout_loss"}
    return Curve(
        epochs=n,
        train_end=_mean(tr[-k:]),
        ho_end=_mean(ho[-k:]),
        train_mid=_mean(tr[mid]),
        ho_mid=_mean(ho[mid]),
        train_early=_mean(tr[:k]),
        ho_early=_mean(ho[:k]),
        ho_min=float(ho[i]),
        ho_min_epoch=int(h["epoch"].iloc[i]),
        sigma=noise_sigma(ho),
        train_sigma=noise_sigma(tr),
        metric_end=metrics,
        train_column=column,
    )


def _mean(v: np.ndarray) -> float:
    """Mean of the finite values; NaN (silently) when there is none."""
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else float("nan")


def curves(per_seed: Mapping[int, pd.DataFrame]) -> dict[int, Curve]:
    out = {}
    for s, df in per_seed.items():
        c = curve(df)
        if c is not None:
            out[s] = c
    return out


def run_curves(histories: Histories, names: Sequence[str]) -> dict[str, dict[int, Curve]]:
    return {n: curves(by_seed(histories.get(n))) for n in names}


def paired_part(label: str, criterion: str, first: Mapping[int, Curve],
                second: Mapping[int, Curve], effect: Callable[[Curve, Curve], float],
                missing: str) -> Part:
    """A part comparing two runs seed by seed (``effect(first[s], second[s])`` over their common
    seeds), or not testable (``missing``) when they share none."""
    seeds = sorted(set(first) & set(second))
    if not seeds:
        return untestable_part(label, criterion, missing)
    return make_part(label, criterion, {s: effect(first[s], second[s]) for s in seeds})


def log_ratio(a: float, b: float) -> float:
    return math.log(max(a, 1e-12) / max(b, 1e-12))


def fmt(x: float) -> str:
    return f"{x:.4g}"


def mean_sd(values: Sequence[float]) -> str:
    """``mean +- sd (n seeds)`` (sd over seeds; just the value for one seed)."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return "n/a"
    if len(v) == 1:
        return f"{fmt(v[0])} (1 seed)"
    return f"{fmt(v.mean())} +- {fmt(v.std(ddof=1))} ({len(v)} seeds)"


# ---------------------------------------------------------------- claim 1


def stall_effect(c: Curve) -> float:
    """Claim 1(a), "held-out loss stays high while training loss falls": from the first third
    to the last (means), the held-out loss falls less than ``STAY_SHARE`` times as much as the
    training loss on the log scale, ``STAY_SHARE * ln(train_early / train_end) -
    ln(ho_early / ho_end)``. A textbook overfit (training learned, held-out flat) is > 0; a
    held-out loss that falls with the training loss, < 0; flat curves (nothing learned), 0.
    No noise margin is subtracted: the seeds' interval is the noise control, so noise alone
    gives "inconclusive", not "does not hold" (issue 26)."""
    return STAY_SHARE * log_ratio(c.train_early, c.train_end) - log_ratio(c.ho_early, c.ho_end)


def train_loss_text(cs: Sequence[Curve]) -> str:
    """Which training loss a claim read (:func:`train_loss_column`), for its evidence."""
    cols = sorted({c.train_column for c in cs})
    what = {CLEAN_TRAIN_LOSS: "eval mode, no augmentation",
            RUNNING_TRAIN_LOSS: "running mean over augmented batches, train mode"}
    return "training loss = " + " and ".join(f"{c} ({what.get(c, '?')})" for c in cols)


TRAIN_LOSS_CRIT = (f"training loss: {CLEAN_TRAIN_LOSS} where logged, else "
                   f"{RUNNING_TRAIN_LOSS}")


def claim1(histories: Histories, run: str = SGD_NONE, augmented: str = SGD_AFFINE) -> Claim:
    """Overfitting without augmentation: the training loss is learned while the held-out loss
    stays high (a level, one-sided), the final gap is large, and augmentation narrows it."""
    crit = {
        "(a) held-out stays high while training is learned": (
            f"{run}: {STAY_SHARE:g} x ln(training loss first third / last third) - "
            "ln(held-out loss first third / last third) (means), > 0: the held-out loss falls "
            f"less than {STAY_SHARE:g} x as much as the training loss; < 0 (does not hold): "
            f"it falls more; {TRAIN_LOSS_CRIT}"),
        "(b) the final gap is large": (
            f"{run}: ln(held-out / training loss, both means of the last third) - ln {GAP:g} "
            f"> 0; {TRAIN_LOSS_CRIT}"),
        "(c) augmentation narrows the gap": (
            f"ln(held-out / training loss) of {run} - that of {augmented}, last third, same "
            f"seed, > 0; {TRAIN_LOSS_CRIT}"),
    }
    labels = list(crit)
    runs = run_curves(histories, [run, augmented])
    cs = runs[run]
    if not cs:
        return missing_claim(1, list(crit.items()), f"run {run} is missing (or < 3 epochs)")
    parts = [make_part(labels[0], crit[labels[0]], {s: stall_effect(c) for s, c in cs.items()}),
             make_part(labels[1], crit[labels[1]],
                       {s: c.gap - math.log(GAP) for s, c in cs.items()})]
    aug = runs[augmented]
    seeds = common_seeds(runs)
    parts.append(paired_part(labels[2], crit[labels[2]], cs, aug, lambda x, y: x.gap - y.gap,
                             f"run {augmented} missing or with no seed of {run}"))
    v = list(cs.values())
    evidence = (
        f"{run}, thirds of {v[0].epochs} epochs ({window(v[0].epochs)} each): training loss "
        f"first {mean_sd([c.train_early for c in v])} -> last "
        f"{mean_sd([c.train_end for c in v])}; held-out first "
        f"{mean_sd([c.ho_early for c in v])} -> last {mean_sd([c.ho_end for c in v])}; "
        f"held-out / training {mean_sd([c.ho_end / c.train_end for c in v])}"
        + (f" vs {augmented} {mean_sd([aug[s].ho_end / aug[s].train_end for s in seeds])}"
           if seeds else "")
        + f"; {train_loss_text(v + [aug[s] for s in seeds])}"
        + ". (Data size and frozen backbone are the preset's, not varied.)"
    )
    return build_claim(1, parts, evidence)


# ---------------------------------------------------------------- claims 2, 3


def claim2(histories: Histories, none: str = SGD_NONE, affine: str = SGD_AFFINE) -> Claim:
    """Affine/blur lowers both losses relative to no augmentation (seeds paired)."""
    crit = {
        "(a) lower training loss": (
            f"ln(training loss {none} / {affine}), means of the last third, same seed, > 0; "
            + TRAIN_LOSS_CRIT),
        "(b) lower held-out loss": (
            f"ln(held-out loss {none} / {affine}), means of the last third, same seed, > 0"),
    }
    runs = run_curves(histories, [none, affine])
    seeds = common_seeds(runs)
    if not seeds:
        miss = [r for r, c in runs.items() if not c]
        why = f"run(s) {', '.join(miss) or none + '/' + affine} missing or with no common seed"
        return missing_claim(2, list(crit.items()), why)
    n, a = runs[none], runs[affine]
    labels = list(crit)
    parts = [
        make_part(labels[0], crit[labels[0]],
                  {s: log_ratio(n[s].train_end, a[s].train_end) for s in seeds}),
        make_part(labels[1], crit[labels[1]],
                  {s: log_ratio(n[s].ho_end, a[s].ho_end) for s in seeds}),
    ]
    evidence = (
        f"training loss (last third): {affine} {mean_sd([a[s].train_end for s in seeds])} vs "
        f"{none} {mean_sd([n[s].train_end for s in seeds])}; held-out: {affine} "
        f"{mean_sd([a[s].ho_end for s in seeds])} vs {none} "
        f"{mean_sd([n[s].ho_end for s in seeds])}; "
        + train_loss_text([x[s] for x in (n, a) for s in seeds])
    )
    return build_claim(2, parts, evidence)


def _rise_text(run: str) -> str:
    return (f"{run}: late rise = ln(mean held-out loss of the last third / mean over the as "
            "many epochs before it)")


def claim3(
    histories: Histories,
    mix: str = SGD_MIX,
    others: Sequence[str] = (SGD_NONE, SGD_AFFINE),
) -> Claim:
    """SGD: Mixup+CutMix has the lowest held-out loss, then creeps up late.

    "Lowest" is one part per other run (held-out minimum of ``mix`` below that run's, same
    seed): it holds when every comparison holds, and a single failing comparison fails it,
    at Holm's level over the claim's parts. (A per-seed minimum over the comparisons, as
    before, is biased below 0 when the runs are alike: it failed 10 % of null studies.) The
    creep is the late rise (:attr:`Curve.rise`) > 0, with no noise margin subtracted: the
    seeds' interval is the noise control (issue 26)."""
    crit_a = {o: (f"(a) lowest held-out loss: below {o}",
                  f"ln(minimum held-out loss of {o} / that of {mix}), same seed, > 0 (one "
                  f"part per run of {', '.join(others)}: all must hold)")
              for o in others}
    crit_b = ("(b) creeps up late", _rise_text(mix) + ", > 0")
    runs = run_curves(histories, [mix, *others])
    m = runs[mix]
    present = [o for o in others if runs[o]]
    if not m:
        return missing_claim(3, [*crit_a.values(), crit_b],
                             f"run {mix} is missing (or < 3 epochs)")
    parts = []
    for o in others:
        label, crit = crit_a[o]
        parts.append(paired_part(label, crit, runs[o], m,
                                 lambda x, y: log_ratio(x.ho_min, y.ho_min),
                                 f"run {o} missing or with no seed of {mix}"))
    parts.append(make_part(*crit_b, {s: c.rise for s, c in m.items()}))
    evidence = (
        f"minimum held-out loss: {mix} {mean_sd([c.ho_min for c in m.values()])}, "
        + ", ".join(f"{o} {mean_sd([c.ho_min for c in runs[o].values()])}" for o in present)
        + f"; {mix}: epoch of the minimum "
        + ", ".join(f"s{s} {c.ho_min_epoch}/{c.epochs}" for s, c in m.items())
        + f", held-out mean before the last third {mean_sd([c.ho_mid for c in m.values()])}"
        f" -> last third {mean_sd([c.ho_end for c in m.values()])}, late rise "
        f"{mean_sd([c.rise for c in m.values()])}, epoch noise sigma "
        f"{mean_sd([c.sigma for c in m.values()])}"
    )
    return build_claim(3, parts, evidence)


# ---------------------------------------------------------------- claim 5


def claim5(
    histories: Histories,
    affine: str = ADAM_AFFINE,
    mix: str = ADAM_MIX,
    sgd_mix: str = SGD_MIX,
) -> Claim:
    """Adam: affine and mix end about equal (equivalence); mix's late rise is gone (one-sided:
    below ``RISE_TOL``), and it is smaller than SGD+mix's (paired contrast).

    (b) tests "the late rise disappears" one-sidedly: effect = ln(1 + ``RISE_TOL``) - late
    rise (:attr:`Curve.rise`, means, so a noisy flat curve has no bias). It holds when the
    rise is below the tolerance beyond the noise, does not hold when it is above it beyond the
    noise, and a flat or still-falling curve is never evidence against (issue 26)."""
    tol = math.log(1 + EQUAL_TOL)
    rise_tol = math.log(1 + RISE_TOL)
    crit = {
        "(a) about equal": (
            f"ln(held-out loss {affine} / {mix}), means of the last third, same seed: interval "
            f"inside +-ln(1 + {EQUAL_TOL:g}) = +-{tol:.4f}"),
        "(b) no late rise": (
            f"ln(1 + {RISE_TOL:g}) - " + _rise_text(mix) + " > 0 (one-sided: < 0, a rise "
            f"beyond {RISE_TOL:.0%}, does not hold)"),
        "(c) less rise than with SGD": (
            f"rise of {sgd_mix} - rise of {mix} (same measure as (b)), same seed, > 0"),
    }
    labels = list(crit)
    runs = run_curves(histories, [affine, mix, sgd_mix])
    miss = [r for r in (affine, mix) if not runs[r]]
    if miss:
        return missing_claim(5, list(crit.items()), f"run(s) {', '.join(miss)} missing")
    a, m, g = runs[affine], runs[mix], runs[sgd_mix]
    seeds = common_seeds({affine: a, mix: m})
    parts = [
        make_part(labels[0], crit[labels[0]],
                  {s: log_ratio(a[s].ho_end, m[s].ho_end) for s in seeds}, kind="within",
                  tol=tol),
        make_part(labels[1], crit[labels[1]], {s: rise_tol - c.rise for s, c in m.items()}),
    ]
    paired = sorted(set(g) & set(m))
    parts.append(paired_part(labels[2], crit[labels[2]], g, m, lambda x, y: x.rise - y.rise,
                             f"run {sgd_mix} missing or with no seed of {mix}"))
    evidence = (
        f"held-out loss (last third): {affine} {mean_sd([a[s].ho_end for s in seeds])}, {mix} "
        f"{mean_sd([m[s].ho_end for s in seeds])}; {mix}: epoch of the minimum "
        + ", ".join(f"s{s} {c.ho_min_epoch}/{c.epochs}" for s, c in m.items())
        + f", late rise {mean_sd([c.rise for c in m.values()])}"
        + (f"; {sgd_mix} late rise {mean_sd([g[s].rise for s in paired])}" if paired else "")
    )
    return build_claim(5, parts, evidence)


# ---------------------------------------------------------------- claim 6


def _metric(c: Curve, metric: str) -> float:
    return c.metric_end.get(metric, float("nan"))


def _far_effects(better: Mapping[int, Curve], worse: Mapping[int, Curve], metric: str,
                 far: float) -> tuple[dict[int, float], dict[int, float]]:
    seeds = sorted(set(better) & set(worse))
    miou = {s: log_ratio(_metric(better[s], metric), _metric(worse[s], metric))
            - math.log(1 + far)
            if np.isfinite(_metric(better[s], metric) * _metric(worse[s], metric))
            else float("nan") for s in seeds}
    loss = {s: log_ratio(worse[s].ho_end, better[s].ho_end) - math.log(1 + far) for s in seeds}
    return miou, loss


def claim6(
    histories: Histories | None = None,
    run: str = SGD_MIX,
    unet: str = UNET_RUN,
    none: str = SGD_NONE,
    metric: str = "heldout_miou",
) -> Claim:
    """PSPNet with augmentation (the pre-registered ``run``, ``claims.claim6_run`` of the
    preset) vs the U-Net without, per seed; as context, the architecture effect (``none`` vs
    ``unet``) and the augmentation effect (``run`` vs ``none``), which are not in the
    verdict."""
    crit = {
        "(a) higher held-out mIoU": (
            f"ln({metric} of {run} / that of {unet}), means of the last third, same seed, "
            f"- ln(1 + {FAR:g}) > 0 (at least {FAR:.0%} higher)"),
        "(b) lower held-out loss": (
            f"ln(held-out loss of {unet} / that of {run}), same seed, - ln(1 + {FAR:g}) > 0 "
            f"(at least {FAR:.0%} lower)"),
    }
    labels = list(crit)
    runs = run_curves(histories or {}, [run, unet, none])
    p, u, n = runs[run], runs[unet], runs[none]
    if not u or not p or not set(p) & set(u):
        why = (f"run {unet} (the U-Net baseline) is missing" if not u else
               f"run {run} (claims.claim6_run) is missing or shares no seed with {unet}")
        return missing_claim(6, list(crit.items()), why)
    miou, loss = _far_effects(p, u, metric, FAR)
    parts = [make_part(labels[0], crit[labels[0]], miou),
             make_part(labels[1], crit[labels[1]], loss)]
    context = []
    for label, better, worse, who in (
        ("architecture effect", n, u, f"{none} vs {unet}"),
        ("augmentation effect", p, n, f"{run} vs {none}"),
    ):
        if set(better) & set(worse):
            m_eff, _ = _far_effects(better, worse, metric, 0.0)
            context.append(make_part(f"{label} ({who})",
                                     f"ln({metric} ratio), last third, same seed", m_eff))
    seeds = sorted(set(p) & set(u))
    evidence = (
        f"pre-registered PSPNet run (claims.claim6_run): {run}; {metric} (last third) {run} "
        f"{mean_sd([_metric(p[s], metric) for s in seeds])} vs {unet} "
        f"{mean_sd([_metric(u[s], metric) for s in seeds])}"
        + (f", {none} {mean_sd([_metric(c, metric) for c in n.values()])}" if n else "")
        + f"; held-out loss {run} {mean_sd([p[s].ho_end for s in seeds])} vs {unet} "
        f"{mean_sd([u[s].ho_end for s in seeds])}"
    )
    return build_claim(6, parts, evidence, context)
