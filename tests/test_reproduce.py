"""reproduce: results of a rerun against the reference, flagged only beyond seed noise."""

from __future__ import annotations

import pandas as pd
import pytest
from tiny_preset import write_tiny

from pspnet_core.config import load_params
from pspnet_core.study import reproduce
from pspnet_core.train.grid import get_run


def results(values: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for run, vals in values.items():
        for seed, v in enumerate(vals):
            rows.append({"run": run, "seed": seed, "final_heldout_loss": v,
                         "final_metric": 1 - v / 4})
    return pd.DataFrame(rows)


def test_only_a_difference_beyond_seed_noise_is_flagged():
    ref = results({"sgd_mix": [1.00, 1.10, 0.95], "sgd_none": [2.00, 2.02, 1.98]})
    # sgd_mix moves by less than its seed spread; sgd_none moves far beyond its tight spread
    cur = results({"sgd_mix": [1.04, 0.98, 1.07], "sgd_none": [2.50, 2.52, 2.49]})
    cmp = reproduce.compare(ref, cur)
    status = cmp.set_index(["run", "quantity"])["status"]
    assert status[("sgd_mix", "final_heldout_loss")] == "within seed noise"
    assert status[("sgd_none", "final_heldout_loss")] == "outside seed noise"
    assert cmp["flagged"].tolist().count(True) == 2  # sgd_none's loss and metric
    text = reproduce.report(cmp, [(6, "inconclusive", "does not hold")],
                            {"cpu": "X", "isa": "amx", "kernels": "AVX512"})
    assert "2 of 4 compared quantities differ beyond seed noise" in text
    assert "claim 6: inconclusive -> does not hold" in text
    assert "X (kernels AVX512, bf16 kernels: amx)" in text


def test_identical_rerun_and_missing_runs():
    ref = results({"sgd_mix": [1.0, 1.1, 0.9]})
    cmp = reproduce.compare(ref, ref.copy())
    assert set(cmp["status"]) == {"identical"} and not cmp["flagged"].any()
    assert "Every number identical" in reproduce.report(cmp, [])
    one = reproduce.compare(results({"a": [1.0]}), results({"a": [1.2], "b": [1.0]}))
    assert set(one["status"]) == {"cannot judge"}


def test_verdicts_are_read_from_claims_md():
    md = ("| # | claim of the paper | verdict | seeds |\n|---|---|---|---|\n"
          "| 1 | Without augmentation | **holds** | 0, 1, 2 |\n"
          "| 6 | PSPNet with augmentation | **inconclusive** | 0, 1, 2 |\n")
    assert reproduce.verdicts(md) == {1: "holds", 6: "inconclusive"}
    assert reproduce.verdict_changes(md, md.replace("**inconclusive**", "**holds**")) == [
        (6, "inconclusive", "holds")]


@pytest.mark.slow
def test_results_table_reads_the_run_store(tmp_path):
    cfg = load_params(write_tiny(tmp_path))
    get_run(cfg, "sgd_mix")
    table = reproduce.results_table(cfg)
    assert list(table.columns) == list(reproduce.COLUMNS)
    row = table[table["run"] == "sgd_mix"].iloc[0]
    assert row["status"] == "done" and row["epochs"] == cfg.train.epochs
    assert row["best_heldout_loss"] <= row["final_heldout_loss"]
    assert row["metric"] == "miou" and 0 <= row["final_metric"] <= 1
    others = table[table["run"] != "sgd_mix"]
    assert (others["status"] == "absent").all() and others["final_metric"].isna().all()
    table.to_csv(tmp_path / "results.csv", index=False)
    back = pd.read_csv(tmp_path / "results.csv")
    assert back["run"].tolist() == table["run"].tolist() and back["hash"].tolist() == (
        table["hash"].tolist())


def test_without_a_reference_the_report_claims_nothing_about_verdicts():
    text = reproduce.report(pd.DataFrame(), [], {"cpu": "X", "isa": "none", "kernels": "AVX2"})
    assert "No reference results" in text and "neither numbers nor verdicts" in text
    assert "Verdicts unchanged" not in text
