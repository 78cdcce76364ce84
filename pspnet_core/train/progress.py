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


# ---------------------------------------------------------------- the whole grid's ETA


class GridJob(NamedTuple):
    """One (run, seed) a command will train: ``kind`` groups runs whose epochs cost the same
    (task and architecture), ``epochs`` is what is left of it."""

    run: str
    seed: int
    kind: str
    epochs: int


class GridClock:
    """The remaining time of a whole (run x seed) grid, from the epochs seen so far.

    Each kind of run (VOC PSPNet, leaf, U-Net: their epochs cost different times) is timed on
    its own; a kind not seen yet is assumed to cost the mean epoch of the kinds seen. So the
    estimate covers every (run, seed) the command will train, not only the one running.
    """

    def __init__(self, jobs: list[GridJob]):
        self.jobs = list(jobs)
        self.left = {(j.run, j.seed): j.epochs for j in self.jobs}
        self.seconds: dict[str, list[float]] = {}
        self._kind = {(j.run, j.seed): j.kind for j in self.jobs}

    @property
    def total_epochs(self) -> int:
        return sum(j.epochs for j in self.jobs)

    @property
    def epochs_left(self) -> int:
        return sum(self.left.values())

    def epoch_done(self, run: str, seed: int, seconds: float) -> None:
        key = (run, seed)
        if key in self.left:
            self.left[key] = max(0, self.left[key] - 1)
            self.seconds.setdefault(self._kind[key], []).append(float(seconds))

    def job_done(self, run: str, seed: int) -> None:
        if (run, seed) in self.left:
            self.left[(run, seed)] = 0

    def eta_seconds(self) -> float | None:
        """Seconds left (None before the first epoch: nothing to go on)."""
        if not self.seconds:
            return None
        per_kind = {k: sum(v) / len(v) for k, v in self.seconds.items()}
        fallback = sum(per_kind.values()) / len(per_kind)
        return sum(n * per_kind.get(self._kind[key], fallback) for key, n in self.left.items())

    def line(self) -> str:
        """``grid: 5/21 (run, seed) done, 80 of 105 epochs left, about 4 min 10 s to go``."""
        done = sum(1 for n in self.left.values() if n == 0)
        if self.epochs_left == 0:
            return f"grid: {done}/{len(self.jobs)} (run, seed) done"
        eta = self.eta_seconds()
        when = "time left known after the first epoch" if eta is None else (
            f"about {format_duration(eta)} to go")
        return (f"grid: {done}/{len(self.jobs)} (run, seed) done, {self.epochs_left} of "
                f"{self.total_epochs} epochs left, {when}")


def format_duration(seconds: float) -> str:
    """``45 s``, ``4 min 10 s``, ``2 h 05 min``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
