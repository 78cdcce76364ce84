"""Verdicts on the paper's claims (docs/method.md#claims) from the run store's numbers.

Every claim function returns a :class:`Claim` with a verdict, the criterion it applied (the
thresholds are module constants, so the text states exactly what was tested) and the measured
numbers as evidence. Measurements come from elsewhere: histories from the run store, per-image
losses and leaf pixel statistics from ``analysis`` / ``metrics``; this module only judges.

Inputs::

    histories: dict run name -> history DataFrame (columns: engine.fit's history.csv)
    galleries: DataFrame(id, loss, split in {"train", "heldout"}[, complexity]) -- per-image
        losses of ranked random images (analysis.ranked_losses), or a dict split -> frame
    leaf_stats: dict from metrics.leaf_pixel_stats(probabilities, masks)

API::

    evaluate_claims(histories, galleries=None, leaf_stats=None, top_k=16) -> list[Claim]
    claim1(histories) ... claim7(histories, leaf_stats)   # one function per claim
    claims_markdown(claims) -> str; claims_frame(claims) -> DataFrame
    write_claims(claims, path, title=...)                 # atomic write of the Markdown
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from pspnet_core.atomic import atomic_write_text

Verdict = Literal["holds", "does not hold", "not testable here"]

# thresholds (documented in the module docstring and repeated in each Claim.criterion)
TRAIN_DROP = 0.7  # claim 1: final train loss <= 0.7 x first-epoch train loss
GAP = 1.5  # claim 1: final held-out loss >= 1.5 x final train loss
RISE = 0.02  # claims 1, 3, 5: "creeps up" = final >= 1.02 x minimum (minimum before last epoch)
EQUAL_TOL = 0.10  # claim 5: |a - b| / min(a, b) <= 10 % counts as "about equal"
MIN_RHO = 0.3  # claim 4: Spearman rho(loss, complexity) >= 0.3
HIGH_P = 0.8  # claim 7: "confident" analog output

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


@dataclass(frozen=True)
class Claim:
    """One claim of the paper (docs/method.md#claims) and what these runs say about it."""

    number: int
    text: str
    verdict: Verdict
    evidence: str
    criterion: str = ""

    @property
    def holds(self) -> bool | None:
        return None if self.verdict == "not testable here" else self.verdict == "holds"


def _claim(n: int, ok: bool, evidence: str, criterion: str) -> Claim:
    return Claim(n, CLAIM_TEXTS[n], "holds" if ok else "does not hold", evidence, criterion)


def _untestable(n: int, evidence: str, criterion: str = "") -> Claim:
    return Claim(n, CLAIM_TEXTS[n], "not testable here", evidence, criterion)


def _missing(histories: Mapping[str, pd.DataFrame], names: Sequence[str]) -> list[str]:
    return [r for r in names if r not in histories or len(histories[r]) == 0]


@dataclass(frozen=True)
class _Curve:
    """Summary numbers of one run's history."""

    epochs: int
    first_epoch: int
    last_epoch: int
    train_first: float
    train_final: float
    ho_first: float
    ho_final: float
    ho_min: float
    ho_min_epoch: int

    @property
    def rise(self) -> float:
        """final / min - 1 of the held-out loss."""
        return self.ho_final / self.ho_min - 1.0 if self.ho_min > 0 else 0.0

    @property
    def creeps_up(self) -> bool:
        return self.ho_min_epoch < self.last_epoch and self.ho_final >= (1 + RISE) * self.ho_min


def _curve(hist: pd.DataFrame) -> _Curve:
    h = hist.sort_values("epoch")
    ho = h["heldout_loss"].astype(float).to_numpy()
    i = int(np.nanargmin(ho))
    ep = h["epoch"].to_numpy()
    return _Curve(
        epochs=len(h),
        first_epoch=int(ep[0]),
        last_epoch=int(ep[-1]),
        train_first=float(h["train_loss"].iloc[0]),
        train_final=float(h["train_loss"].iloc[-1]),
        ho_first=float(ho[0]),
        ho_final=float(ho[-1]),
        ho_min=float(ho[i]),
        ho_min_epoch=int(ep[i]),
    )


def _f(x: float) -> str:
    return f"{x:.4g}"


# ---------------------------------------------------------------- claims 1-7


def claim1(histories: Mapping[str, pd.DataFrame], run: str = "sgd_none") -> Claim:
    """Overfitting without augmentation."""
    crit = (
        f"{run}: final train <= {TRAIN_DROP} x first-epoch train, and final held-out >= "
        f"{GAP} x final train (the held-out loss stays high while the training loss falls; "
        f"a late rise alone is not enough)"
    )
    if _missing(histories, [run]):
        return _untestable(1, f"run {run} is missing", crit)
    c = _curve(histories[run])
    falls = c.train_final <= TRAIN_DROP * c.train_first
    gap = c.ho_final / c.train_final if c.train_final > 0 else float("inf")
    overfit = gap >= GAP
    evidence = (
        f"train loss {_f(c.train_first)} (epoch {c.first_epoch}) -> {_f(c.train_final)} "
        f"(epoch {c.last_epoch}), ratio {_f(c.train_final / c.train_first)}; held-out "
        f"{_f(c.ho_first)} -> {_f(c.ho_final)}, min {_f(c.ho_min)} at epoch {c.ho_min_epoch}; "
        f"final held-out / final train = {_f(gap)}; held-out rise after its minimum "
        f"{100 * c.rise:.1f}%. (Data size and frozen backbone are the preset's, not varied.)"
    )
    return _claim(1, falls and overfit, evidence, crit)


def claim2(
    histories: Mapping[str, pd.DataFrame], none: str = "sgd_none", affine: str = "sgd_affine"
) -> Claim:
    """Affine/blur lowers both losses relative to no augmentation."""
    crit = f"final train and final held-out loss of {affine} both < those of {none}"
    miss = _missing(histories, [none, affine])
    if miss:
        return _untestable(2, f"run(s) {', '.join(miss)} missing", crit)
    n, a = _curve(histories[none]), _curve(histories[affine])
    ok = a.train_final < n.train_final and a.ho_final < n.ho_final
    evidence = (
        f"final train: {affine} {_f(a.train_final)} vs {none} {_f(n.train_final)}; final "
        f"held-out: {affine} {_f(a.ho_final)} vs {none} {_f(n.ho_final)}; min held-out: "
        f"{affine} {_f(a.ho_min)} vs {none} {_f(n.ho_min)}"
    )
    return _claim(2, ok, evidence, crit)


def claim3(
    histories: Mapping[str, pd.DataFrame],
    mix: str = "sgd_mix",
    others: Sequence[str] = ("sgd_none", "sgd_affine"),
) -> Claim:
    """SGD: Mixup+CutMix has the lowest held-out loss, then creeps up."""
    crit = (
        f"min held-out of {mix} < min held-out of every other SGD run, and minimum before the "
        f"last epoch with final >= {1 + RISE:g} x minimum"
    )
    present = [o for o in others if not _missing(histories, [o])]
    if _missing(histories, [mix]) or not present:
        return _untestable(3, f"needs {mix} and at least one of {', '.join(others)}", crit)
    m = _curve(histories[mix])
    mins = {o: _curve(histories[o]).ho_min for o in present}
    lowest = all(m.ho_min < v for v in mins.values())
    ok = lowest and m.creeps_up
    evidence = (
        f"min held-out: {mix} {_f(m.ho_min)} (epoch {m.ho_min_epoch}), "
        + ", ".join(f"{o} {_f(v)}" for o, v in mins.items())
        + f"; {mix} final held-out {_f(m.ho_final)} at epoch {m.last_epoch}, "
        f"{100 * m.rise:+.1f}% vs its minimum"
    )
    return _claim(3, ok, evidence, crit)


def _gallery_frame(galleries: Any) -> pd.DataFrame | None:
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


def _spearman(a: pd.Series, b: pd.Series) -> float:
    """Spearman's rho as the Pearson correlation of ranks (no scipy needed)."""
    if len(a) < 3:
        return float("nan")
    return float(a.rank().corr(b.rank()))


def claim4(galleries: Any, top_k: int = 16, complexity_column: str | None = None) -> Claim:
    """Per-image loss vs scene complexity; high-loss held-out vs high-loss training images."""
    col = complexity_column
    crit = (
        f"(a) Spearman rho(loss, complexity) >= {MIN_RHO} over all ranked images (if a "
        f"complexity column is present) and (b) mean loss of the {top_k} highest-loss held-out "
        f"images > that of the {top_k} highest-loss training images"
    )
    df = _gallery_frame(galleries)
    if df is None or not {"loss", "split"} <= set(df.columns):
        return _untestable(4, "no per-image losses (gallery frames with loss, split)", crit)
    train = df[df["split"] == "train"]["loss"].astype(float)
    held = df[df["split"] == "heldout"]["loss"].astype(float)
    if len(train) == 0 or len(held) == 0:
        return _untestable(4, "needs per-image losses of both train and heldout images", crit)
    top_train = train.nlargest(top_k).mean()
    top_held = held.nlargest(top_k).mean()
    part_b = bool(top_held > top_train)
    evidence = (
        f"(b) mean loss of the {min(top_k, len(held))} highest held-out {_f(top_held)} vs "
        f"{min(top_k, len(train))} highest train {_f(top_train)}"
    )
    if col is None:
        col = next((c for c in ("complexity", "boundary_fraction", "n_classes") if c in df), None)
    if col is None or col not in df:
        evidence += "; (a) not tested: no complexity column (see scene_complexity), judged on (b)"
        return _claim(4, part_b, evidence, crit)
    rho = _spearman(df["loss"].astype(float), df[col].astype(float))
    part_a = bool(rho >= MIN_RHO)
    evidence = f"(a) Spearman rho(loss, {col}) = {_f(rho)} over {len(df)} images; " + evidence
    return _claim(4, part_a and part_b, evidence, crit)


def claim5(
    histories: Mapping[str, pd.DataFrame], affine: str = "adam_affine", mix: str = "adam_mix"
) -> Claim:
    """Adam: affine and mix end about equal, and mix no longer creeps up."""
    crit = (
        f"|final held-out {affine} - {mix}| / smaller <= {EQUAL_TOL:.0%}, and {mix} does not "
        f"rise late (not: minimum before last epoch and final >= {1 + RISE:g} x minimum)"
    )
    miss = _missing(histories, [affine, mix])
    if miss:
        return _untestable(5, f"run(s) {', '.join(miss)} missing", crit)
    a, m = _curve(histories[affine]), _curve(histories[mix])
    diff = abs(a.ho_final - m.ho_final) / max(min(a.ho_final, m.ho_final), 1e-12)
    ok = diff <= EQUAL_TOL and not m.creeps_up
    evidence = (
        f"final held-out: {affine} {_f(a.ho_final)}, {mix} {_f(m.ho_final)} (difference "
        f"{100 * diff:.1f}%); {mix} min {_f(m.ho_min)} at epoch {m.ho_min_epoch} of "
        f"{m.last_epoch}, final {100 * m.rise:+.1f}% vs minimum"
    )
    return _claim(5, ok, evidence, crit)


def claim6() -> Claim:
    return _untestable(
        6,
        "the study has no U-Net baseline (the authors' earlier report), so there is nothing to "
        "compare against",
        "needs a U-Net run without augmentation",
    )


def claim7(
    histories: Mapping[str, pd.DataFrame] | None = None,
    leaf_stats: Mapping[str, float] | None = None,
    run: str = "leaf_sgd_affine",
) -> Claim:
    """Leaf disease: graded analog output, finds and misses spots (partly testable)."""
    crit = (
        f"partly testable: precision of pixels with threshold <= p < {HIGH_P} is lower than of "
        f"pixels with p >= {HIGH_P} (graded output), and some predicted-disease pixels lie "
        "outside the mask and some mask pixels are missed"
    )
    review = (
        "Not judged: whether pixels outside the mask are spots the labels missed or errors "
        "(e.g. a hand), which needs human review of the images."
    )
    parts = []
    if histories is not None and run in histories and len(histories[run]):
        last = histories[run].sort_values("epoch").iloc[-1]
        for key in ("heldout_dice", "heldout_iou"):
            if key in last:
                parts.append(f"{key} {_f(float(last[key]))}")
    if not leaf_stats:
        ev = "; ".join(parts + ["no pixel statistics (leaf_pixel_stats) given", review])
        return _untestable(7, ev, crit)
    s = leaf_stats
    parts.append(f"pixel Dice {_f(s['dice'])}, IoU {_f(s['iou'])}")
    parts.append(
        f"{100 * s['outside_fraction']:.1f}% of predicted-disease pixels lie outside the mask; "
        f"{100 * s['missed_fraction']:.1f}% of mask pixels are missed"
    )
    pm, ph = s.get("precision_mid", float("nan")), s.get("precision_high", float("nan"))
    parts.append(
        f"precision at {s.get('threshold', 0.5):g} <= p < {HIGH_P}: {_f(pm)} "
        f"({int(s.get('n_mid', 0))} px); at p >= {HIGH_P}: {_f(ph)} ({int(s.get('n_high', 0))} px)"
    )
    if np.isnan(pm) or np.isnan(ph):
        return _untestable(7, "; ".join(parts + ["no pixels in one intensity band", review]), crit)
    graded = pm < ph
    errors = s["outside_fraction"] > 0 and s["missed_fraction"] > 0
    return _claim(7, bool(graded and errors), "; ".join(parts + [review]), crit)


def evaluate_claims(
    histories: Mapping[str, pd.DataFrame],
    galleries: Any = None,
    leaf_stats: Mapping[str, float] | None = None,
    top_k: int = 16,
) -> list[Claim]:
    """All seven claims, in order."""
    return [
        claim1(histories),
        claim2(histories),
        claim3(histories),
        claim4(galleries, top_k=top_k),
        claim5(histories),
        claim6(),
        claim7(histories, leaf_stats),
    ]


# ---------------------------------------------------------------- output


def claims_frame(claims: Sequence[Claim]) -> pd.DataFrame:
    """The claims as a DataFrame (one row each), for display in a notebook."""
    return pd.DataFrame([asdict(c) for c in claims])


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def claims_markdown(claims: Sequence[Claim]) -> str:
    """A Markdown table: number, claim, verdict, criterion, evidence."""
    lines = [
        "| # | claim of the paper | verdict | criterion | evidence |",
        "|---|---|---|---|---|",
    ]
    for c in claims:
        verdict = f"**{c.verdict}**"
        lines.append(
            f"| {c.number} | {_cell(c.text)} | {verdict} | {_cell(c.criterion)} | "
            f"{_cell(c.evidence)} |"
        )
    return "\n".join(lines) + "\n"


def write_claims(
    claims: Sequence[Claim], path: str | Path, title: str | None = "Claims of the paper, checked"
) -> Path:
    """Write the Markdown table (with an optional heading) to ``path`` atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = (f"# {title}\n\n" if title else "") + claims_markdown(claims)
    atomic_write_text(target, text)
    return target
