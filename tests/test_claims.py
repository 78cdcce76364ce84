"""Claims: hand-made seed sets of histories, ranked images and leaf outputs under which each
claim holds, does not hold, is inconclusive, partly holds or is not testable."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pspnet_core import claims as C
from pspnet_core import metrics

SEEDS = (0, 1, 2)


def hist(train, heldout, miou=None, **extra):
    n = len(train)
    df = pd.DataFrame(
        {
            "epoch": np.arange(1, n + 1),
            "train_loss": np.asarray(train, dtype=float),
            "heldout_loss": np.asarray(heldout, dtype=float),
            "heldout_miou": np.linspace(0.1, 0.3, n) if miou is None else miou,
            "heldout_pixel_acc": np.linspace(0.5, 0.7, n),
            "lr": np.full(n, 0.01),
            "seconds": np.ones(n),
        }
    )
    for k, v in extra.items():
        df[k] = v
    return df


def jitter(seed: int, n: int = 8, scale: float = 0.004) -> np.ndarray:
    """Small seed-specific wiggle, so the seeds differ (sd > 0) but agree on every effect."""
    return np.random.default_rng(100 + seed).normal(0, scale, n)


def per_seed(fn, seeds=SEEDS):
    return {s: fn(s) for s in seeds}


TRAIN = 2.0 * 0.75 ** np.arange(8)  # keeps falling
PLATEAU = np.array([2.0, 1.7, 1.6, 1.55, 1.55, 1.56, 1.57, 1.58])  # stalls, then rises a bit
FALLING = TRAIN * 1.1  # held-out follows training: no overfitting
LEVELS_OFF = np.array([2.0, 1.7, 1.6, 1.55, 1.53, 1.52, 1.52, 1.51])  # flattens, no rise


def none_run(s):
    return hist(TRAIN + jitter(s), PLATEAU + jitter(s))


# ---------------------------------------------------------------- rule


def test_t_interval_and_judging():
    lo, hi = C.t_interval([1.0, 2.0, 3.0])
    h = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert lo == pytest.approx(2 - h) and hi == pytest.approx(2 + h)
    assert C.t_interval([1.0]) is None and C.t_interval([1.0, float("nan")]) is None
    assert C._part("x", "", {0: 0.2, 1: 0.3, 2: 0.25}).verdict == "holds"
    assert C._part("x", "", {0: -0.2, 1: -0.3, 2: -0.25}).verdict == "does not hold"
    assert C._part("x", "", {0: -0.2, 1: 0.3, 2: 0.25}).verdict == "inconclusive"
    one = C._part("x", "", {0: 5.0})  # one seed, no bootstrap: no interval
    assert one.verdict == "inconclusive" and "one seed" in one.note
    # the bootstrap alone decides for one seed; two intervals must agree
    assert C._part("x", "", {0: 5.0}, boot=(0.1, 0.2)).verdict == "holds"
    assert C._part("x", "", {0: 0.2, 1: 0.3, 2: 0.25}, boot=(-0.1, 0.2)).verdict == (
        "inconclusive")
    within = {0: 0.01, 1: -0.02, 2: 0.0}
    assert C._part("x", "", within, kind="within", tol=0.1).verdict == "holds"
    assert C._part("x", "", {0: 0.5, 1: 0.6, 2: 0.55}, kind="within", tol=0.1).verdict == (
        "does not hold")
    assert C._part("x", "", {s: 5.0 for s in SEEDS}).seed_interval == (5.0, 5.0)


def test_combine_parts():
    def p(v):
        return C.Part("p", "", v)

    assert C._combine([p("holds"), p("holds")]) == "holds"
    assert C._combine([p("holds"), p("not testable here")]) == "partly holds"
    assert C._combine([p("holds"), p("inconclusive")]) == "inconclusive"
    assert C._combine([p("inconclusive"), p("does not hold")]) == "does not hold"
    assert C._combine([p("not testable here")] * 2) == "not testable here"


def test_noise_sigma_ignores_a_steady_trend():
    assert C.noise_sigma(np.linspace(1, 2, 8)) == pytest.approx(0.0, abs=1e-12)
    wiggle = np.array([1.0, 0.9, 0.93, 0.87, 0.93, 0.87, 0.93, 0.87])
    assert C.noise_sigma(wiggle) == pytest.approx(0.12 / (0.6745 * math.sqrt(6)))
    assert C.window(8) == 3 and C.window(3) == 2


# ---------------------------------------------------------------- claim 1


def test_claim1_holds_and_fails():
    c = C.claim1({"sgd_none": per_seed(none_run)})
    assert c.verdict == "holds" and c.seeds == SEEDS
    assert [p.verdict for p in c.parts] == ["holds"] * 3
    # held-out keeps falling with training: (a) fails although the gap would be large
    falling = {"sgd_none": per_seed(lambda s: hist(TRAIN + jitter(s), 2.5 * FALLING + jitter(s)))}
    c = C.claim1(falling)
    assert c.verdict == "does not hold" and c.parts[0].verdict == "does not hold"
    assert c.parts[2].verdict == "holds"
    # plateau, but no gap: (c) fails
    close = {"sgd_none": per_seed(lambda s: hist(PLATEAU * 0.9 + jitter(s), PLATEAU + jitter(s)))}
    c = C.claim1(close)
    assert c.verdict == "does not hold" and c.parts[1].verdict == "does not hold"


def test_claim1_inconclusive_and_not_testable():
    # the seeds disagree on (a): one plateau, two still falling slowly, one fast
    mixed = {0: none_run(0), 1: hist(TRAIN, 2.5 * FALLING), 2: none_run(2)}
    assert C.claim1({"sgd_none": mixed}).verdict == "inconclusive"
    # one seed (a plain DataFrame): no interval -> inconclusive, whatever it shows
    c = C.claim1({"sgd_none": none_run(0)})
    assert c.verdict == "inconclusive" and c.seeds == (0,)
    assert C.claim1({}).verdict == "not testable here"
    assert C.claim1({"sgd_none": hist(TRAIN[:2], PLATEAU[:2])}).verdict == "not testable here"


# ---------------------------------------------------------------- claim 2


def test_claim2_flips_paired_by_seed():
    none = per_seed(none_run)
    better = per_seed(lambda s: hist(0.9 * TRAIN + jitter(s), 0.8 * PLATEAU + jitter(s)))
    worse_train = per_seed(lambda s: hist(1.3 * TRAIN + jitter(s), 0.8 * PLATEAU + jitter(s)))
    assert C.claim2({"sgd_none": none, "sgd_affine": better}).verdict == "holds"
    c = C.claim2({"sgd_none": none, "sgd_affine": worse_train})
    assert c.verdict == "does not hold" and [p.verdict for p in c.parts] == [
        "does not hold", "holds"]
    # only seed 0 in common: one pair, no interval
    c = C.claim2({"sgd_none": {0: none[0], 5: none[1]}, "sgd_affine": {0: better[0]}})
    assert c.verdict == "inconclusive" and c.seeds == (0,)
    assert C.claim2({"sgd_none": none}).verdict == "not testable here"


# ---------------------------------------------------------------- claim 3


BASE3 = {
    "sgd_none": per_seed(none_run),
    "sgd_affine": per_seed(lambda s: hist(1.2 * TRAIN, np.array([2, 1.5, 1.2, 1.1, 1.1, 1.1, 1.1,
                                                           1.1]) + jitter(s))),
}
CREEP = np.array([1.5, 1.0, 0.9, 0.85, 0.84, 0.88, 0.92, 0.96])  # minimum, then a steady rise
STILL_FALLING = np.array([1.5, 1.0, 0.9, 0.85, 0.82, 0.8, 0.78, 0.76])
NOISY_FLAT = np.array([1.5, 1.0, 0.93, 0.87, 0.93, 0.87, 0.93, 0.87])  # last value = 1.0 x min


def test_claim3_creep_must_exceed_the_noise():
    c = C.claim3({**BASE3, "sgd_mix": per_seed(lambda s: hist(TRAIN, CREEP + jitter(s, 8, 1e-3)))})
    assert c.verdict == "holds"
    c = C.claim3({**BASE3, "sgd_mix": per_seed(lambda s: hist(TRAIN, STILL_FALLING + jitter(s)))})
    assert c.verdict == "does not hold" and c.parts[1].verdict == "does not hold"
    # up and down by 0.06 every epoch: the last third is above the minimum, but by noise only
    noisy = per_seed(lambda s: hist(TRAIN, NOISY_FLAT + jitter(s, 8, 1e-3)))
    c = C.claim3({**BASE3, "sgd_mix": noisy})
    assert c.parts[1].verdict == "does not hold" and c.verdict == "does not hold"
    # not the lowest held-out loss: (a) fails
    high = per_seed(lambda s: hist(TRAIN, CREEP + 0.5 + jitter(s, 8, 1e-3)))
    c = C.claim3({**BASE3, "sgd_mix": high})
    assert c.parts[0].verdict == "does not hold" and c.verdict == "does not hold"


def test_claim3_inconclusive_partly_not_testable():
    mixed = {0: hist(TRAIN, CREEP), 1: hist(TRAIN, STILL_FALLING), 2: hist(TRAIN, CREEP + 0.01)}
    assert C.claim3({**BASE3, "sgd_mix": mixed}).verdict == "inconclusive"
    creeping = per_seed(lambda s: hist(TRAIN, CREEP + jitter(s, 8, 1e-3)))
    # no other SGD run: (a) is not testable, (b) holds -> partly holds
    assert C.claim3({"sgd_mix": creeping}).verdict == "partly holds"
    assert C.claim3(BASE3).verdict == "not testable here"


# ---------------------------------------------------------------- claim 4


def gallery(seed: int, held_worse: bool = True, n: int = 30, with_miou: bool = True,
            complexity: bool = True) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    out = {}
    for split in ("train", "heldout"):
        loss = np.sort(rng.random(n)) + (0.3 if split == "heldout" else 0.0)
        df = pd.DataFrame({"index": np.arange(n), "id": [f"{split}{i}" for i in range(n)],
                           "loss": loss})
        if with_miou:
            # mIoU falls with the loss; held-out images lose another 0.15 (or gain 0.3: more
            # than their higher loss costs them)
            shift = (-0.15 if held_worse else 0.3) if split == "heldout" else 0.0
            df["miou"] = np.clip(0.9 - 0.4 * loss + shift + rng.normal(0, 0.02, n), 0, 1)
            df["pixel_acc"] = df["miou"] + 0.05
        if complexity:
            df["complexity"] = loss + rng.normal(0, 0.1, n)
        out[split] = df
    return out


def test_claim4_compares_miou_at_matched_rank_not_loss():
    c = C.claim4(per_seed(gallery), top_k=8, n_boot=300)
    assert c.verdict == "holds" and c.seeds == SEEDS
    assert all(p.boot_interval is not None and p.seed_interval is not None for p in c.parts)
    # held-out images have a higher loss at every rank, but are segmented *better*: (b) fails
    c = C.claim4(per_seed(lambda s: gallery(s, held_worse=False)), top_k=8, n_boot=300)
    assert c.parts[1].verdict == "does not hold" and c.verdict == "does not hold"
    # higher held-out loss, identical mIoU at each rank: no longer holds by construction
    same = {s: gallery(s) for s in SEEDS}
    for g in same.values():
        g["heldout"]["miou"] = g["train"]["miou"].to_numpy()
    assert C.claim4(same, top_k=8, n_boot=300).parts[1].verdict == "inconclusive"
    # complexity unrelated to loss -> (a) fails
    anti = {s: gallery(s) for s in SEEDS}
    for g in anti.values():
        for df in g.values():
            df["complexity"] = -df["loss"]
    assert C.claim4(anti, top_k=8, n_boot=300).parts[0].verdict == "does not hold"


def test_claim4_one_seed_bootstrap_partly_and_not_testable():
    # one gallery (seed 3), no seed interval: the bootstrap over images decides
    c = C.claim4(gallery(3), top_k=8, seed=3, n_boot=300)
    assert c.verdict == "holds" and c.seeds == (3,) and c.parts[1].seed_interval is None
    # no complexity column: (a) not testable -> partly holds
    c = C.claim4(per_seed(lambda s: gallery(s, complexity=False)), top_k=8, n_boot=300)
    assert c.verdict == "partly holds" and c.parts[0].verdict == "not testable here"
    # losses only (an old cache without per-image mIoU): (b) not testable
    c = C.claim4(per_seed(lambda s: gallery(s, with_miou=False)), top_k=8, n_boot=300)
    assert c.parts[1].verdict == "not testable here" and "mIoU" in c.parts[1].note
    assert C.claim4(None).verdict == "not testable here"


# ---------------------------------------------------------------- claim 5


def test_claim5_flips():
    affine = per_seed(lambda s: hist(TRAIN, LEVELS_OFF * 0.6 + jitter(s)))
    equal = per_seed(lambda s: hist(TRAIN, LEVELS_OFF * 0.61 + jitter(s, 8, 5e-4)))
    far = per_seed(lambda s: hist(TRAIN, LEVELS_OFF * 0.45 + jitter(s)))
    creeping = per_seed(lambda s: hist(TRAIN, CREEP * 0.88 + jitter(s, 8, 1e-3)))
    assert C.claim5({"adam_affine": affine, "adam_mix": equal}).verdict == "holds"
    c = C.claim5({"adam_affine": affine, "adam_mix": far})
    assert c.parts[0].verdict == "does not hold" and c.verdict == "does not hold"
    c = C.claim5({"adam_affine": affine, "adam_mix": creeping})
    assert c.parts[1].verdict == "does not hold"
    # one seed apart by 30 %, two equal: the interval reaches past the tolerance
    mixed = {**equal, 2: hist(TRAIN, LEVELS_OFF * 0.8)}
    assert C.claim5({"adam_affine": affine, "adam_mix": mixed}).verdict == "inconclusive"
    assert C.claim5({"adam_affine": affine}).verdict == "not testable here"


# ---------------------------------------------------------------- claim 6


def test_claim6_against_the_unet():
    def run(loss_scale, miou):
        return per_seed(lambda s: hist(TRAIN, PLATEAU * loss_scale + jitter(s),
                                       miou=np.full(8, miou) + jitter(s, 8, 0.003)))

    psp = {"sgd_affine": run(0.7, 0.45), "sgd_mix": run(0.6, 0.5), "adam_mix": run(0.65, 0.48)}
    c = C.claim6({**psp, "unet_none": run(1.2, 0.25)})
    assert c.verdict == "holds" and "sgd_mix" in c.evidence  # the best augmented run
    c = C.claim6({**psp, "unet_none": run(0.62, 0.49)})  # about as good: not "far better"
    assert c.verdict == "does not hold"
    unet_mixed = {0: run(1.2, 0.25)[0], 1: run(0.5, 0.6)[1], 2: run(1.2, 0.25)[2]}
    assert C.claim6({**psp, "unet_none": unet_mixed}).verdict == "inconclusive"
    assert C.claim6(psp).verdict == "not testable here"
    assert C.claim6().verdict == "not testable here"


# ---------------------------------------------------------------- claim 7


def leaf_outputs(seed: int, graded: bool = True, n: int = 4, size: int = 40):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    probs, masks = [], []
    for _ in range(n):
        cy, cx, r = rng.integers(14, 26), rng.integers(14, 26), rng.integers(6, 10)
        signed = r - np.hypot(yy - cy, xx - cx)  # > 0 inside, distance to the edge
        mask = (signed > 0).astype(np.float32)
        if graded:  # uncertain near the label's edge, confident away from it
            p = 1 / (1 + np.exp(-signed / 1.5))
        else:  # hard 0/1 at the edge, but hesitant (0.6 / 0.4) away from it
            p = np.where(np.abs(signed) <= 3, mask, np.where(mask > 0, 0.6, 0.4))
        probs.append(np.clip(p + rng.normal(0, 0.01, p.shape), 0, 1))
        masks.append(mask)
    prob, mask = np.stack(probs), np.stack(masks)
    return {"probabilities": prob, "masks": mask,
            "stats": metrics.leaf_pixel_stats(prob, mask)}


def test_leaf_boundary_sums():
    out = leaf_outputs(0)
    sums = C.leaf_boundary_sums(out["probabilities"], out["masks"], band=2)
    assert len(sums) == 4 and (sums["band_n"] + sums["far_n"] == 40 * 40).all()
    assert (sums["p_in_far"] > sums["p_in_band"]).all()
    assert (sums["p_out_far"] < sums["p_out_band"]).all()
    empty = C.leaf_boundary_sums(np.full((8, 8), 0.1), np.zeros((8, 8)))
    assert int(empty["band_n"].iloc[0]) == 0 and int(empty["far_n"].iloc[0]) == 64
    assert C.band_width((473, 473)) == 14 and C.band_width((10, 97)) == 2


def test_claim7_partly_holds_at_most():
    leaf_hist = {"leaf_sgd_affine": per_seed(
        lambda s: hist(TRAIN, TRAIN, heldout_dice=0.7, heldout_iou=0.55))}
    c = C.claim7(leaf_hist, per_seed(leaf_outputs), n_boot=300)
    assert c.verdict == "partly holds" and c.parts[0].verdict == "holds"
    assert [p.verdict for p in c.parts[1:]] == ["not testable here"] * 2
    assert "heldout_dice" in c.evidence and "human" in c.parts[1].note
    # confident at the edge, hesitant inside: (a) fails
    c = C.claim7(leaf_hist, per_seed(lambda s: leaf_outputs(s, graded=False)), n_boot=300)
    assert c.verdict == "does not hold"
    # one stated seed: the bootstrap over leaves gives the interval
    c = C.claim7(None, leaf_outputs(4), seed=4, n_boot=300)
    assert c.verdict == "partly holds" and c.seeds == (4,)
    # the seeds disagree
    mixed = {0: leaf_outputs(0), 1: leaf_outputs(1, graded=False), 2: leaf_outputs(2)}
    assert C.claim7(None, mixed, n_boot=300).verdict == "inconclusive"
    assert C.claim7(leaf_hist, None).verdict == "not testable here"
    stats_only = {0: leaf_outputs(0)["stats"]}
    assert C.claim7(None, stats_only).verdict == "not testable here"


# ---------------------------------------------------------------- all claims, output


def test_evaluate_markdown_and_write(tmp_path):
    histories = {**BASE3, "sgd_mix": per_seed(lambda s: hist(TRAIN, CREEP + jitter(s, 8, 1e-3))),
                 "adam_affine": none_run(0)}  # a plain DataFrame: one seed
    out = C.evaluate_claims(histories, {s: gallery(s) for s in SEEDS}, None, top_k=8,
                            n_boot=200)
    assert [c.number for c in out] == [1, 2, 3, 4, 5, 6, 7]
    assert [c.verdict for c in out] == [
        "holds", "does not hold", "holds", "holds", "not testable here", "not testable here",
        "not testable here"]
    assert all(v in C.VERDICTS for v in (c.verdict for c in out))
    md = C.claims_markdown(out)
    assert md.startswith("**Rule.**") and "t-interval" in md and "bootstrap" in md
    assert md.count("## Claim ") == 7 and "| 1 | Without augmentation" in md
    assert "s0 +" in md and "s2 " in md  # per-seed values
    lo, hi = out[0].parts[0].seed_interval
    assert f"[{lo:+.4g}, {hi:+.4g}]" in md
    path = C.write_claims(out, tmp_path / "figs" / "claims.md")
    assert path.read_text().startswith("# Claims") and md in path.read_text()
    assert list(path.parent.iterdir()) == [path]  # no temp files left
    frame = C.claims_frame(out)
    assert len(frame) == 7 and list(frame["verdict"])[0] == "holds"
    parts = C.parts_frame(out)
    assert len(parts) == sum(len(c.parts) for c in out) and {"seed_lo", "boot_hi"} <= set(parts)
    assert out[0].holds is True and out[1].holds is False and out[4].holds is None


def test_scene_complexity():
    simple = np.zeros((20, 20), dtype=np.int64)
    simple[5:8, 5:8] = 3
    busy = np.random.default_rng(0).integers(0, 21, (20, 20))
    busy[0] = 255
    a, b = metrics.scene_complexity(simple), metrics.scene_complexity(busy)
    assert a["n_classes"] == 2 and b["n_classes"] > 10
    assert a["complexity"] < b["complexity"]
