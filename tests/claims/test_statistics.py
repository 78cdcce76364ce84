"""The verdict rule: intervals, p-values, Holm's adjustment, combination."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pspnet_core.claims import statistics as S


def test_t_interval():
    lo, hi = S.t_interval([1.0, 2.0, 3.0])
    h = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert (lo, hi) == (pytest.approx(2 - h), pytest.approx(2 + h))
    assert S.t_interval([1.0]) is None and S.t_interval([1.0, float("nan")]) is None


def test_part_verdicts_and_p_values():
    assert S.make_part("x", "", {0: 0.2, 1: 0.3, 2: 0.25}).verdict == "holds"
    bad = S.make_part("x", "", {0: -0.2, 1: -0.3, 2: -0.25})
    assert bad.verdict == "does not hold" and bad.p_against < S.ALPHA
    mixed = S.make_part("x", "", {0: -0.2, 1: 0.3, 2: 0.25})
    assert mixed.verdict == "inconclusive" and mixed.p_against > S.ALPHA
    one = S.make_part("x", "", {0: 5.0})
    assert one.verdict == "inconclusive" and "one seed" in one.note and one.p_against is None
    # draws alone decide for one seed; two intervals must agree
    draws = np.linspace(0.1, 0.2, 100)
    assert S.make_part("x", "", {0: 5.0}, draws).verdict == "holds"
    assert S.make_part("x", "", {0: .2, 1: .3, 2: .25}, np.linspace(-.1, .2, 100)).verdict == (
        "inconclusive")
    assert S.make_part("x", "", {0: .01, 1: -.02, 2: 0.0}, kind="within", tol=.1).verdict == (
        "holds")
    far = S.make_part("x", "", {0: .5, 1: .6, 2: .55}, kind="within", tol=.1)
    assert far.verdict == "does not hold" and far.p_against < S.ALPHA


def test_holm_step_down_over_the_tested_parts():
    strong = S.make_part("a", "", {0: -1.0, 1: -1.01, 2: -0.99})  # p ~ 1e-5
    # below 0 at 95 % (p just under 0.025), but above Holm's first level 0.025 / 2
    marginal = S.make_part("b", "", {0: -0.16, 1: -0.25, 2: -0.34})
    marginal2 = S.make_part("c", "", {0: -0.17, 1: -0.25, 2: -0.33})
    assert marginal.verdict == marginal2.verdict == "does not hold"
    assert S.ALPHA / 2 < marginal.p_against <= S.ALPHA
    # two marginal parts: the smallest p fails alpha / 2, so neither is rejected
    adjusted = S.holm_does_not_hold([marginal, marginal2])
    assert [p.verdict for p in adjusted] == ["inconclusive", "inconclusive"]
    assert all("Holm" in p.note for p in adjusted)
    # a strong failure first: step-down then tests the marginal one at alpha / 1
    adjusted = S.holm_does_not_hold([strong, marginal])
    assert [p.verdict for p in adjusted] == ["does not hold", "does not hold"]
    # alone, a marginal part is not adjusted (m = 1); an untested part does not count in m
    untested = S.untestable_part("d", "", "missing run")
    assert S.holm_does_not_hold([marginal, untested])[0].verdict == "does not hold"
    # a part that holds is never turned into a failure
    good = S.make_part("e", "", {0: 0.2, 1: 0.3, 2: 0.25})
    assert S.holm_does_not_hold([good, marginal, marginal2])[0].verdict == "holds"


def test_combine():
    def p(v):
        return S.Part("x", "", v)

    assert S.combine([p("holds"), p("holds")]) == "holds"
    assert S.combine([p("holds"), p("not testable here")]) == "partly holds"
    assert S.combine([p("holds"), p("inconclusive")]) == "inconclusive"
    assert S.combine([p("inconclusive"), p("does not hold")]) == "does not hold"
    assert S.combine([p("not testable here")]) == "not testable here"


def test_resampled_interval_recentres_on_the_full_sample():
    draws = {0: np.array([1.0, 2.0, 3.0]), 1: np.array([2.0, 4.0, 6.0])}
    np.testing.assert_allclose(S.resampled_interval(draws), [1.5, 3.0, 4.5])
    np.testing.assert_allclose(S.resampled_interval(draws, {0: 0.0, 1: 10.0}),
                               [3.5, 5.0, 6.5])


def test_auroc_from_histograms_matches_pairwise_counting():
    rng = np.random.default_rng(0)
    correct = rng.integers(0, 5, 8).astype(float)
    wrong = rng.integers(0, 5, 8).astype(float)
    cs = np.repeat(np.arange(8), correct.astype(int))
    ws = np.repeat(np.arange(8), wrong.astype(int))
    pairs = (cs[:, None] > ws[None]).mean() + 0.5 * (cs[:, None] == ws[None]).mean()
    assert S.auroc_from_histograms(correct, wrong) == pytest.approx(pairs)
    assert np.isnan(S.auroc_from_histograms(correct, np.zeros(8)))


def test_noise_sigma_ignores_a_linear_trend():
    assert S.noise_sigma(np.linspace(1, 2, 12)) == pytest.approx(0.0, abs=1e-12)
    noisy = 1 + np.random.default_rng(0).normal(0, 0.05, 400)
    assert S.noise_sigma(noisy) == pytest.approx(0.05, rel=0.2)
    assert S.window(6) == 2 and S.window(30) == 10
