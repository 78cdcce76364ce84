"""progress: the engine's per-epoch and resume lines, written and read back in one place."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from pspnet_core.train.progress import (
    EpochLine,
    GridClock,
    GridJob,
    format_duration,
    format_epoch_line,
    format_resume_line,
    is_resume_line,
    parse_epoch_line,
)


def test_epoch_line_names_run_and_seed_and_round_trips():
    line = format_epoch_line("sgd_mix", 1, 3, 6, train_loss=1.23456, heldout_loss=0.98765,
                             metric="mIoU", metric_value=0.4567, lr=0.00887, seconds=4.26)
    assert line == ("sgd_mix s1 epoch 3/6: train 1.2346 held-out 0.9877 mIoU 0.457 "
                    "lr 8.87e-03 (4.3s)")
    assert parse_epoch_line(line) == EpochLine(
        run="sgd_mix", seed=1, epoch=3, epochs=6, train_loss=1.2346, heldout_loss=0.9877,
        metric="mIoU", metric_value=0.457, lr=8.87e-3, seconds=4.3,
    )
    assert parse_epoch_line(line + "  \n").seed == 1  # trailing whitespace is allowed


@pytest.mark.parametrize("values", [
    {"train_loss": float("nan"), "heldout_loss": 7160.6392, "metric_value": 0.0},
    {"train_loss": 1e6, "heldout_loss": float("inf"), "metric_value": 1.0},
])
def test_epoch_line_round_trips_large_and_non_finite_numbers(values):
    line = format_epoch_line("leaf_sgd_affine", 4294967295, 8, 8, metric="dice", lr=1e-2,
                             seconds=123.45, **values)
    got = parse_epoch_line(line)
    assert got is not None and (got.run, got.seed, got.metric) == (
        "leaf_sgd_affine", 4294967295, "dice")
    for key, value in values.items():
        assert math.isnan(getattr(got, key)) if math.isnan(value) else (
            getattr(got, key) == pytest.approx(value, rel=1e-4))


@pytest.mark.parametrize("line", [
    "sgd_mix epoch 3/6: train 1.2000 held-out 1.3000 mIoU 0.100 lr 1.00e-02 (4.3s)",  # no seed
    "epoch 1 train:  50%|#####     | 1/2 [00:01<00:01]",
    "sgd_mix s0: resuming after epoch 2 from runs/x",
    "",
])
def test_other_lines_are_not_epoch_lines(line):
    assert parse_epoch_line(line) is None


def test_resume_line():
    line = format_resume_line("adam_none", 2, 5, "runs/adam_none-s2-0123456789ab")
    assert line == "adam_none s2: resuming after epoch 5 from runs/adam_none-s2-0123456789ab"
    assert is_resume_line(line)
    assert not is_resume_line(format_epoch_line(
        "adam_none", 2, 5, 6, train_loss=1, heldout_loss=1, metric="mIoU", metric_value=0,
        lr=1e-3, seconds=1))


def test_progress_does_not_load_torch():
    """The study CLI reads epoch lines without the training stack."""
    code = "import sys, pspnet_core.train.progress; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_grid_clock_times_each_kind_and_covers_the_whole_grid():
    """Two VOC runs of 3 epochs and a leaf run of 2: the ETA counts every epoch left, each
    kind at its own measured cost, an unseen kind at the mean of the kinds seen."""
    clock = GridClock([GridJob("sgd_none", 0, "voc/pspnet", 3),
                       GridJob("sgd_mix", 0, "voc/pspnet", 3),
                       GridJob("leaf_sgd_affine", 0, "leaf/pspnet", 2)])
    assert clock.total_epochs == 8 and clock.eta_seconds() is None
    assert clock.line() == ("grid: 0/3 (run, seed) done, 8 of 8 epochs left, time left known "
                            "after the first epoch")
    clock.epoch_done("sgd_none", 0, 10.0)
    clock.epoch_done("sgd_none", 0, 20.0)
    assert clock.eta_seconds() == pytest.approx(15.0 * 6)  # 4 VOC + 2 leaf epochs at 15 s
    clock.epoch_done("sgd_none", 0, 15.0)
    clock.job_done("sgd_none", 0)
    clock.epoch_done("leaf_sgd_affine", 0, 100.0)
    assert clock.eta_seconds() == pytest.approx(3 * 15.0 + 1 * 100.0)
    assert clock.line() == "grid: 1/3 (run, seed) done, 4 of 8 epochs left, about 2 min 25 s to go"
    clock.epoch_done("not_in_grid", 0, 1e6)  # ignored
    assert clock.epochs_left == 4


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "0 s"), (59, "59 s"), (61, "1 min 1 s"),
                                               (3600 + 5 * 60, "1 h 05 min")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text
