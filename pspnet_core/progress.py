"""The per-epoch progress line, in one place: the engine prints it, the study reads it back.

    sgd_mix s1 epoch 3/6: train 1.2000 held-out 1.3000 mIoU 0.100 lr 1.00e-02 (4.3s)
    sgd_mix s1: resuming after epoch 2 from runs/sgd_mix-s1-0123456789ab

:func:`format_epoch_line` writes the first (the run, its seed, epoch k/N, the training and
held-out loss, the task's metric, the learning rate before the epoch, seconds);
:func:`parse_epoch_line` reads it back into an :class:`EpochLine`, or gives ``None`` for any other
line. :func:`format_resume_line` / :func:`is_resume_line` do the same for the resume line. No
torch here: the study CLI imports this without loading the training stack.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?(?:e[-+]?\d+)?|nan|inf)"

EPOCH_LINE = re.compile(
    rf"^(?P<run>\S+) s(?P<seed>\d+) epoch (?P<epoch>\d+)/(?P<epochs>\d+): "
    rf"train (?P<train_loss>{_NUMBER}) held-out (?P<heldout_loss>{_NUMBER}) "
    rf"(?P<metric>\S+) (?P<metric_value>{_NUMBER}) lr (?P<lr>{_NUMBER}) "
    rf"\((?P<seconds>{_NUMBER})s\)\s*$"
)
RESUME_LINE = re.compile(r"^(?P<run>\S+) s(?P<seed>\d+): resuming after epoch (?P<epoch>\d+) ")


class EpochLine(NamedTuple):
    """One parsed epoch line; the numbers as printed (rounded)."""

    run: str
    seed: int
    epoch: int
    epochs: int
    train_loss: float
    heldout_loss: float
    metric: str
    metric_value: float
    lr: float
    seconds: float


def format_epoch_line(
    run: str,
    seed: int,
    epoch: int,
    epochs: int,
    *,
    train_loss: float,
    heldout_loss: float,
    metric: str,
    metric_value: float,
    lr: float,
    seconds: float,
) -> str:
    """``<run> s<seed> epoch <k>/<N>: train <loss> held-out <loss> <metric> <value> lr <lr>
    (<seconds>s)``; ``metric`` is ``mIoU`` (VOC) or ``dice`` (leaf)."""
    return (
        f"{run} s{seed} epoch {epoch}/{epochs}: train {train_loss:.4f} held-out "
        f"{heldout_loss:.4f} {metric} {metric_value:.3f} lr {lr:.2e} ({seconds:.1f}s)"
    )


def parse_epoch_line(line: str) -> EpochLine | None:
    """The fields of a line written by :func:`format_epoch_line`; ``None`` for any other line."""
    m = EPOCH_LINE.match(line)
    if m is None:
        return None
    return EpochLine(
        run=m["run"], seed=int(m["seed"]), epoch=int(m["epoch"]), epochs=int(m["epochs"]),
        train_loss=float(m["train_loss"]), heldout_loss=float(m["heldout_loss"]),
        metric=m["metric"], metric_value=float(m["metric_value"]), lr=float(m["lr"]),
        seconds=float(m["seconds"]),
    )


def format_resume_line(run: str, seed: int, epoch: int, where: object) -> str:
    """``<run> s<seed>: resuming after epoch <k> from <folder>``."""
    return f"{run} s{seed}: resuming after epoch {epoch} from {where}"


def is_resume_line(line: str) -> bool:
    return RESUME_LINE.match(line) is not None
