"""analysis: loading a trained run's network, and per-seed numbers as mean and spread."""

import math

import pytest
import torch
from tiny_preset import write_tiny

from pspnet_core import analysis, engine, runs
from pspnet_core.analysis import seed_table
from pspnet_core.config import load_params
from pspnet_core.model import PSPNet


@pytest.mark.slow
def test_load_model_is_eval_mode_with_checkpoint_weights(reference_run):
    _, _, run = reference_run
    model = analysis.load_model(run, "cpu")
    assert isinstance(model, PSPNet) and not model.training
    state = run.checkpoint()["model"]
    assert model.state_dict().keys() == state.keys()
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_load_model_of_an_untrained_run_says_so(tmp_path):
    r = engine.get_run(load_params(write_tiny(tmp_path)), "adam_none", train=False)
    with pytest.raises(runs.RunNotTrainedError, match="no checkpoint"):
        analysis.load_model(r)


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
