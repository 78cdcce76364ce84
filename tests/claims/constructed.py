"""Constructed histories shared by the claims tests (imported, not a conftest)."""

from __future__ import annotations

import numpy as np
import pandas as pd

SEEDS = (0, 1, 2)


def hist(train, heldout, miou=None) -> pd.DataFrame:
    n = len(train)
    return pd.DataFrame({
        "epoch": np.arange(1, n + 1),
        "train_loss": np.asarray(train, dtype=float),
        "heldout_loss": np.asarray(heldout, dtype=float),
        "heldout_miou": np.linspace(0.1, 0.3, n) if miou is None else np.asarray(miou, float),
        "lr": np.full(n, 0.01),
        "seconds": np.ones(n),
    })


def jitter(seed: int, n: int, scale: float = 0.004) -> np.ndarray:
    """Small seed-specific wiggle: the seeds differ (sd > 0) but agree on every effect."""
    return np.random.default_rng(100 + seed).normal(0, scale, n)
