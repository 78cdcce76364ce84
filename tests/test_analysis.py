"""analysis.seed_table: per-seed numbers reported as mean and spread."""

import math

from pspnet_core.analysis import seed_table


def test_seed_table_mean_sd_min_max():
    table = seed_table({0: {"dice": 0.5, "iou": 0.2}, 1: {"dice": 0.7, "iou": 0.4},
                        2: {"dice": 0.6, "iou": 0.3}})
    assert list(table.columns) == ["seed 0", "seed 1", "seed 2", "mean", "sd", "min", "max"]
    row = table.loc["dice"]
    assert math.isclose(row["mean"], 0.6) and math.isclose(row["sd"], 0.1)
    assert (row["min"], row["max"]) == (0.5, 0.7)


def test_seed_table_one_seed_has_no_sd():
    table = seed_table({3: {"dice": 0.5}})
    assert table.loc["dice", "mean"] == 0.5 and math.isnan(table.loc["dice", "sd"])
