"""Claims: hand-made histories that make each verdict flip both ways."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pspnet_core import claims as C


def hist(train, heldout, **extra):
    n = len(train)
    df = pd.DataFrame(
        {
            "epoch": np.arange(1, n + 1),
            "train_loss": train,
            "heldout_loss": heldout,
            "heldout_miou": np.linspace(0.1, 0.3, n),
            "heldout_pixel_acc": np.linspace(0.5, 0.7, n),
            "lr": np.full(n, 0.01),
            "seconds": np.ones(n),
        }
    )
    for k, v in extra.items():
        df[k] = v
    return df


DOWN = [2.0, 1.5, 1.0, 0.8, 0.6]


def test_claim1_holds_with_gap():
    c = C.claim1({"sgd_none": hist(DOWN, [2.0, 1.8, 1.7, 1.6, 1.6])})
    assert c.verdict == "holds" and "2.667" in c.evidence  # final held-out / final train


def test_claim1_does_not_hold():
    # held-out follows training: no overfitting
    assert C.claim1({"sgd_none": hist(DOWN, [2.0, 1.5, 1.0, 0.8, 0.65])}).verdict == (
        "does not hold"
    )
    # a late rise of the held-out loss without a gap is noise, not "stays high"
    assert C.claim1({"sgd_none": hist(DOWN, [1.5, 0.9, 0.7, 0.8, 0.85])}).verdict == (
        "does not hold"
    )
    # training loss does not fall enough
    flat = [1.0, 0.95, 0.9, 0.85, 0.8]
    assert C.claim1({"sgd_none": hist(flat, [2, 2, 2, 2, 2])}).verdict == "does not hold"
    assert C.claim1({}).verdict == "not testable here"


def test_claim2_flips():
    none = hist(DOWN, [2, 1.8, 1.7, 1.6, 1.6])
    good = hist([1.8, 1.3, 0.9, 0.7, 0.5], [1.8, 1.5, 1.3, 1.2, 1.1])
    bad = hist([1.8, 1.3, 0.9, 0.8, 0.7], [1.8, 1.5, 1.3, 1.2, 1.1])  # train higher
    assert C.claim2({"sgd_none": none, "sgd_affine": good}).verdict == "holds"
    assert C.claim2({"sgd_none": none, "sgd_affine": bad}).verdict == "does not hold"
    assert C.claim2({"sgd_none": none}).verdict == "not testable here"


def test_claim3_flips():
    base = {
        "sgd_none": hist(DOWN, [2, 1.8, 1.7, 1.6, 1.6]),
        "sgd_affine": hist(DOWN, [2, 1.5, 1.2, 1.1, 1.1]),
    }
    creeping = hist(DOWN, [1.5, 1.0, 0.9, 0.95, 0.97])
    flat_end = hist(DOWN, [1.5, 1.0, 0.95, 0.92, 0.9])
    not_lowest = hist(DOWN, [1.5, 1.2, 1.15, 1.18, 1.2])
    assert C.claim3({**base, "sgd_mix": creeping}).verdict == "holds"
    assert C.claim3({**base, "sgd_mix": flat_end}).verdict == "does not hold"
    assert C.claim3({**base, "sgd_mix": not_lowest}).verdict == "does not hold"
    assert C.claim3({"sgd_mix": creeping}).verdict == "not testable here"


def test_claim4_flips():
    rng = np.random.default_rng(0)
    cx = rng.random(40)
    train = pd.DataFrame({"id": [f"t{i}" for i in range(20)], "loss": cx[:20], "split": "train"})
    held = pd.DataFrame(
        {"id": [f"h{i}" for i in range(20)], "loss": cx[20:] + 0.5, "split": "heldout"}
    )
    df = pd.concat([train, held], ignore_index=True)
    df["complexity"] = df["loss"] + rng.normal(0, 0.05, len(df))
    assert C.claim4(df, top_k=5).verdict == "holds"
    # complexity unrelated to loss -> (a) fails
    df2 = df.assign(complexity=-df["loss"])
    assert C.claim4(df2, top_k=5).verdict == "does not hold"
    # held-out high-loss images better than training high-loss ones -> (b) fails
    swapped = df.assign(split=df["split"].map({"train": "heldout", "heldout": "train"}))
    assert C.claim4(swapped, top_k=5).verdict == "does not hold"
    # dict input, no complexity column: judged on (b) and says so
    c = C.claim4({"train": train, "heldout": held}, top_k=5)
    assert c.verdict == "holds" and "(a) not tested" in c.evidence
    assert C.claim4(None).verdict == "not testable here"


def test_claim5_flips():
    affine = hist(DOWN, [1.5, 1.2, 1.1, 1.05, 1.0])
    equal = hist(DOWN, [1.5, 1.2, 1.1, 1.0, 0.95])
    far = hist(DOWN, [1.5, 1.0, 0.8, 0.75, 0.7])
    creeping = hist(DOWN, [1.5, 1.0, 0.9, 0.95, 1.0])
    assert C.claim5({"adam_affine": affine, "adam_mix": equal}).verdict == "holds"
    assert C.claim5({"adam_affine": affine, "adam_mix": far}).verdict == "does not hold"
    assert C.claim5({"adam_affine": affine, "adam_mix": creeping}).verdict == "does not hold"
    assert C.claim5({"adam_affine": affine}).verdict == "not testable here"


def test_claim6_not_testable():
    assert C.claim6().verdict == "not testable here"


def _leaf(prob_noise_inside: float):
    yy, xx = np.mgrid[:32, :32]
    mask = ((yy - 16) ** 2 + (xx - 16) ** 2 < 64).astype(np.float32)
    prob = np.where(mask > 0, 0.95, 0.05)
    prob[0:3, 0:3] = prob_noise_inside  # a spot outside the mask
    prob[16, 16] = 0.1  # a missed pixel
    return prob, mask


def test_leaf_pixel_stats_and_claim7_flips():
    prob, mask = _leaf(0.6)  # uncertain spot outside the mask at medium intensity
    s = C.leaf_pixel_stats(prob, mask)
    assert s["outside_fraction"] > 0 and s["missed_fraction"] > 0
    assert s["precision_mid"] == 0.0 and s["precision_high"] == 1.0
    leaf = {"leaf_sgd_affine": hist(DOWN, DOWN, heldout_dice=0.7, heldout_iou=0.55)}
    c = C.claim7(leaf, s)
    assert c.verdict == "holds"
    assert "heldout_dice 0.7" in c.evidence and "human review" in c.evidence
    # confident false positives: high intensity outside the mask, mid intensity inside
    prob2 = np.where(mask > 0, 0.7, 0.05)
    prob2[0:6, 0:6] = 0.99
    assert C.claim7(leaf, C.leaf_pixel_stats(prob2, mask)).verdict == "does not hold"
    assert C.claim7(leaf, None).verdict == "not testable here"
    perfect = C.leaf_pixel_stats(mask * 0.9, mask)
    assert perfect["dice"] == pytest.approx(1.0)


def test_scene_complexity():
    simple = np.zeros((20, 20), dtype=np.int64)
    simple[5:8, 5:8] = 3
    busy = np.random.default_rng(0).integers(0, 21, (20, 20))
    busy[0] = 255
    a, b = C.scene_complexity(simple), C.scene_complexity(busy)
    assert a["n_classes"] == 2 and b["n_classes"] > 10
    assert a["complexity"] < b["complexity"]


def test_evaluate_markdown_and_write(tmp_path):
    histories = {
        "sgd_none": hist(DOWN, [2, 1.8, 1.7, 1.6, 1.6]),
        "sgd_affine": hist(DOWN, [2, 1.5, 1.2, 1.1, 1.1]),
        "sgd_mix": hist(DOWN, [1.5, 1.0, 0.9, 0.95, 0.97]),
    }
    out = C.evaluate_claims(histories)
    assert [c.number for c in out] == [1, 2, 3, 4, 5, 6, 7]
    assert [c.verdict for c in out][4:6] == ["not testable here"] * 2
    md = C.claims_markdown(out)
    assert md.count("\n") == 2 + 7 and "**holds**" in md
    path = C.write_claims(out, tmp_path / "figs" / "claims.md")
    assert path.read_text().startswith("# Claims") and md in path.read_text()
    assert list(path.parent.iterdir()) == [path]  # no temp files left
    assert len(C.claims_frame(out)) == 7
