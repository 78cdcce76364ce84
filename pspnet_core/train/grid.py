"""The run store's front door for training: a run, a run's seeds, or a grid of runs and seeds,
each loaded if done, resumed if interrupted, trained if absent. :func:`get_grid` is the one
grid-training loop: ``pspnet-train --run ...``, the study's training phase (through that
command) and the notebooks (``get_runs`` / ``get_grid``) all train through it, with one ETA
over the whole grid after each run (``progress.GridClock``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tqdm.auto import tqdm

from pspnet_core.config import StudyConfig, resolve_run
from pspnet_core.store import runs as store
from pspnet_core.system import errors
from pspnet_core.system.precision import resolve_precision
from pspnet_core.train import engine
from pspnet_core.train.progress import GridClock, GridJob
from pspnet_core.train.runtime import Runtime, runtime_for


def _runtime_maker(cfg: StudyConfig, fit_kwargs: dict[str, Any]
                   ) -> tuple[bool, Callable[[], Runtime]]:
    """Pop ``runtime`` / ``device`` / ``quiet`` from ``fit_kwargs``: (quiet, a function returning
    the :class:`Runtime` to train with (the one given, else the preset's ``device`` / ``quiet``
    settings, each replaced by the keyword when given), built on first use only, so that reading
    finished runs never resolves the device (a ``device: cuda`` preset read on a laptop)."""
    given: Runtime | None = fit_kwargs.pop("runtime", None)
    device, quiet = fit_kwargs.pop("device", None), fit_kwargs.pop("quiet", None)
    built: list[Runtime] = [] if given is None else [given]
    quiet = given.quiet if given is not None else cfg.quiet if quiet is None else bool(quiet)

    def runtime() -> Runtime:
        if not built:
            built.append(runtime_for(cfg, device, quiet))
        return built[0]

    return quiet, runtime


def get_run(
    cfg: StudyConfig, run: str, train: bool = True, seed: int | None = None, **fit_kwargs: Any
) -> store.Run:
    """Run ``run`` of preset ``cfg`` with seed ``seed`` (one of ``cfg.seeds``; ``None``: the
    first): loaded if done, resumed if interrupted, trained if absent.

    With ``train=False`` nothing is trained: the run is returned in whatever state it is
    (check ``run.status``). ``fit_kwargs`` go to :func:`fit`; ``runtime=`` (a :class:`Runtime`)
    or ``device=`` / ``quiet=`` (replacing the preset's settings) say where and how it trains.
    """
    r = store.open_run(resolve_run(cfg, run, seed))
    if r.done or not train:
        return r
    _, runtime = _runtime_maker(cfg, fit_kwargs)
    engine.fit(r.run_cfg, runtime(), **fit_kwargs)
    return r


def get_runs(
    cfg: StudyConfig, run: str, train: bool = True, **fit_kwargs: Any
) -> dict[int, store.Run]:
    """``{seed: Run}`` of run ``run`` for every seed of ``cfg.seeds`` (in that order), each as
    :func:`get_run` gives it (trained one after the other when ``train``, with the seeds' ETA:
    :func:`get_grid`)."""
    return get_grid(cfg, [run], train=train, **fit_kwargs)[run]


def get_grid(
    cfg: StudyConfig, runs: Iterable[str], train: bool = True, *,
    seeds: Sequence[int] | None = None, log: Callable[[str], None] | None = None,
    on_run: Callable[[str, int, store.Run], None] | None = None, **fit_kwargs: Any,
) -> dict[str, dict[int, store.Run]]:
    """``{run: {seed: Run}}`` for each of ``runs`` and each of ``seeds`` (default: every seed of
    the preset), seed by seed, each as :func:`get_run` gives it. Before the first run it trains,
    ``log`` gets the precision; after each, the whole grid's time left (``progress.GridClock``;
    not with ``quiet``). ``on_run(name, seed, run)`` is called for every pair once it is done
    or found done (the command line prints the folder). An error of one run is raised as it is,
    marked with the run and seed (:func:`errors.locate`: the boundary's line names them).
    ``runtime=`` or ``device=`` / ``quiet=`` as for :func:`get_run`; the runtime is built once,
    before the first run it trains."""
    log = log if log is not None else tqdm.write
    names = list(runs)
    pairs = [(seed, name) for seed in (seeds if seeds is not None else cfg.seeds)
             for name in names]
    clock = grid_clock(cfg, pairs) if train else GridClock([])
    quiet, runtime = _runtime_maker(cfg, fit_kwargs)
    if clock.jobs and not quiet:
        log(f"precision {resolve_precision(cfg.precision, cfg.device).describe()}")
    if len(clock.jobs) > 1 and not quiet:
        log(clock.line())
    out: dict[str, dict[int, store.Run]] = {name: {} for name in names}
    for seed, name in pairs:
        try:
            r = store.open_run(resolve_run(cfg, name, seed))
            if train and not r.done:
                engine.fit(r.run_cfg, runtime(), on_epoch=lambda row, n=name, s=seed:
                           clock.epoch_done(n, s, row["seconds"]), **fit_kwargs)
                if r.done:
                    clock.job_done(name, seed)
                if len(clock.jobs) > 1 and not quiet:
                    log(clock.line())
        except Exception as err:  # noqa: BLE001 - re-raised as it is, named with its run
            errors.locate(err, f"{name} (seed {seed})")
            raise
        if on_run is not None:
            on_run(name, seed, r)
        out[name][seed] = r
    return out


def grid_clock(cfg: StudyConfig, pairs: list[tuple[int, str]]) -> GridClock:
    """A :class:`progress.GridClock` over the (seed, run) pairs that are not done, each with
    the epochs it has left (a partial run resumes; a damaged folder counts whole)."""
    jobs = []
    for seed, name in pairs:
        run_cfg = resolve_run(cfg, name, seed)
        r = store.peek_run(run_cfg)
        if r.status in store.DONE_STATES:
            continue
        try:
            done = r.epochs_done if r.status == "partial" else 0
        except Exception:  # noqa: BLE001 - a damaged folder: fit reports it
            done = 0
        spec = cfg.runs[name]
        jobs.append(GridJob(name, seed, f"{spec.task}/{spec.arch}", run_cfg.epochs - done))
    return GridClock(jobs)
