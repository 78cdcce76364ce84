"""Training: the paper's recipes (docs/method.md#loss to #optimizers) as plain functions.

``fit(run_cfg)`` trains one run into the run store (``runs.py``), resuming from the last completed
epoch when a checkpoint exists; ``get_run(cfg, "sgd_mix")`` returns a finished run as it is,
resumes an interrupted one and trains an absent one. Using a trained run (prediction, per-image
losses, galleries) is ``analysis.py``'s. The pieces, torchvision-reference style:

- ``build_optimizer``: SGD (lr, momentum, weight decay) or Adam (lr, betas, weight decay) over the
  *trainable* parameters only (a frozen backbone is not handed to the optimizer).
- ``build_scheduler``: a ``LambdaLR``; SGD uses poly decay ``(1 - t/T) ** power`` stepped per
  epoch (the paper) or per iteration (``sgd.poly_step: iter``); Adam keeps a constant lr
  (``adam.schedule: constant``) or decays it as the SGD listing, ``(1 - epoch/E) **
  adam.poly_power`` per epoch (``adam.schedule: poly``).
- ``train_one_epoch``: regimes ``none``/``affine`` come from the dataset; ``mix`` additionally
  applies Mixup or CutMix per batch (``mixing.mix_batch``) with a ``torch.Generator`` seeded from
  ``(seed, epoch, tag, rank)``, so a resumed run draws exactly what an uninterrupted one would.
  The objective is ``losses.main_and_total`` (main + aux_weight * aux, docs/method.md#loss),
  run under the run's precision (``device.autocast``).
- ``evaluate``: held-out loss (mean of per-image losses) and a confusion matrix -> mIoU and pixel
  accuracy (VOC) or Dice and IoU at threshold 0.5 (leaf); sums are all-reduced under DDP.

Where and how a process trains (device, rank, world size, quiet) is one
:class:`~pspnet_core.train.runtime.Runtime`, passed once to :func:`fit` and from it to each step;
none of it is part of the RunConfig or its hash.

``history.csv`` columns, one row per epoch (1-based): ``epoch, train_loss, train_total_loss,
train_clean_loss, heldout_loss, heldout_miou, heldout_pixel_acc`` (VOC) or ``heldout_dice,
heldout_iou, heldout_pixel_acc`` (leaf), ``lr, seconds``.
``train_loss`` is the main head's criterion as the paper plots it (Figs. 5 and 10): the running
mean over the epoch's steps of per-batch pixel means, on augmented (and mixed) batches in train
mode (dropout on, batch statistics); ``train_total_loss`` is what is optimized, main +
aux_weight * aux. ``train_clean_loss`` is measured like ``heldout_loss``, after the epoch, in
eval mode, without augmentation, on a fixed set of training images (:func:`clean_training_set`):
the mean over images of per-image pixel means. The claims compare it with the held-out loss
(docs/method.md, *Training loss*); the running loss is what the figures draw.

Determinism: every epoch reseeds python/numpy/torch and builds its loaders from
``(seed, epoch)``; model, optimizer and scheduler state come from the checkpoint, so no global
RNG state needs saving (checkpoints hold only tensors and plain containers and load with
``weights_only=True``). On CPU the same seed gives the same history and weights, with
``data.num_workers`` 0 or 2 and in fp32 or bf16 (progress bars never iterate a loader themselves,
``tests/test_faults.py``), and a killed-and-resumed run ends bit-identical to an uninterrupted one
(``tests/test_runs.py``). The loss is checked for NaN/inf every ``CHECK_EVERY`` steps, not every
step (no per-step host synchronisation).

Multi-GPU: run the same entry point under ``torchrun``; ``WORLD_SIZE > 1`` initializes the process
group (NCCL on CUDA, gloo on CPU), wraps the model in DistributedDataParallel, shards the training
set with a DistributedSampler (``batch_size`` stays the global batch: each rank gets
``batch_size / world_size``) and the held-out set by stride; only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from tqdm.auto import tqdm

from pspnet_core import data
from pspnet_core import model as model_lib
from pspnet_core.config import (
    AdamConfig,
    ParamsError,
    RunConfig,
    SGDConfig,
)
from pspnet_core.data.loading import make_loader
from pspnet_core.losses import main_and_total, segmentation_loss
from pspnet_core.metrics import SegMetrics
from pspnet_core.mixing import mix_batch
from pspnet_core.store import runs as store
from pspnet_core.system.device import autocast, to_device
from pspnet_core.system.precision import warn_if_emulated
from pspnet_core.train.progress import format_epoch_line, format_resume_line
from pspnet_core.train.runtime import Runtime, build_runtime

STOP_ENV = "PSPNET_STOP_AFTER_EPOCH"  # test hook: return after saving this epoch's checkpoint
# "0" turns the progress bars off (the per-epoch lines stay). `make test` sets it for nbval,
# which reads a cell's messages only after the cell finishes: minutes of widget-bar updates then
# overflow the kernel's message queue and the cell's end is lost ("Timeout ... waiting for
# output"). JupyterLab and papermill read while the cell runs and keep the bars.
BARS_ENV = "PSPNET_PROGRESS_BARS"


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN/inf; the message names the epoch and step."""


# ---------------------------------------------------------------- small helpers


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across processes and Python versions)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0]
               >> np.uint64(1))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class _Bar:
    """A progress bar over ``iterable`` that never touches it: tqdm is given only the total.

    (``tqdm.auto``'s class calls ``iter()`` on an iterable it is handed; for a DataLoader that
    starts the workers an extra time and draws from the loader's seeded generator, so batches
    depended on ``num_workers``.) Quiet -> no tqdm object at all.
    """

    def __init__(self, iterable, quiet: bool, **kw):
        self.iterable = iterable
        self.bar = None
        if not quiet and os.environ.get(BARS_ENV, "1") != "0":
            total = kw.pop("total", None)
            if total is None and hasattr(iterable, "__len__"):
                total = len(iterable)
            self.bar = tqdm(total=total, leave=False, dynamic_ncols=True, **kw)

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                if self.bar is not None:
                    self.bar.update(1)
        finally:
            if self.bar is not None:
                self.bar.close()

    def set_postfix(self, **kw) -> None:
        if self.bar is not None:
            self.bar.set_postfix(**kw)


def _bar(iterable, quiet: bool, **kw) -> _Bar:
    return _Bar(iterable, quiet, **kw)


# ---------------------------------------------------------------- distributed


def dist_info() -> tuple[int, int]:
    """(rank, world_size); (0, 1) when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def setup_distributed(device: torch.device) -> bool:
    """Initialize the process group under torchrun (WORLD_SIZE > 1); True if this call did."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    return True


def all_reduce_sum(t: Tensor) -> Tensor:
    if dist_info()[1] > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


# ---------------------------------------------------------------- recipes


def build_optimizer(model: nn.Module, run_cfg: RunConfig) -> torch.optim.Optimizer:
    """SGD or Adam over the trainable parameters only (docs/method.md#optimizers)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    o = run_cfg.optim
    if isinstance(o, SGDConfig):
        # foreach: one multi-tensor kernel per step instead of a loop over the parameters;
        # numerically identical to the loop (bench/train_step.py checks 50 steps), ~2.7x faster
        # optimizer steps on the CPU. fused=True is faster still but changes the numbers.
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
                               nesterov=o.nesterov, foreach=True)
    if isinstance(o, AdamConfig):
        return torch.optim.Adam(
            params, lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay, foreach=True
        )
    raise TypeError(f"unknown optimizer config {o!r}")


def poly_lambda(total_steps: int, power: float) -> Callable[[int], float]:
    """``lr = lr0 * (1 - step / total) ** power`` (the paper's LambdaLR)."""
    return lambda step: (1 - min(step, total_steps) / total_steps) ** power


def build_scheduler(
    optimizer: torch.optim.Optimizer, run_cfg: RunConfig, iters_per_epoch: int
) -> tuple[torch.optim.lr_scheduler.LambdaLR, bool]:
    """(scheduler, per_iteration): poly for SGD; for Adam ``adam.schedule`` (constant, or poly
    stepped per epoch as the listing's ``LambdaLR``, docs/method.md#optimizers)."""
    o = run_cfg.optim
    if isinstance(o, SGDConfig):
        per_iter = o.poly_step == "iter"
        total = run_cfg.epochs * (iters_per_epoch if per_iter else 1)
        fn = poly_lambda(total, o.poly_power)
    elif isinstance(o, AdamConfig) and o.schedule == "poly":
        per_iter, fn = False, poly_lambda(run_cfg.epochs, o.poly_power)
    elif isinstance(o, AdamConfig) and o.schedule == "constant":
        per_iter, fn = False, (lambda step: 1.0)
    else:
        raise TypeError(f"no schedule for optimizer config {o!r}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn), per_iter


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    run_cfg: RunConfig,
    runtime: Runtime,
    epoch: int,
    *,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    mix_generator: torch.Generator | None = None,
) -> dict[str, float]:
    """One pass over ``loader``; ``scheduler`` (if given) is stepped after every iteration.

    ``mix_generator`` set -> Mixup/CutMix per batch. Returns ``train_loss`` (main head) and
    ``train_total_loss`` (main + aux), means over steps (and ranks).

    No per-step host synchronisation: losses are summed on the device, and the first step with
    a non-finite loss is recorded there; the host looks every ``CHECK_EVERY`` steps and at the
    end of the epoch, raising :class:`NonFiniteLossError` (epoch, step, checked range). The
    weights in memory are then spoiled, but nothing is saved: the last good checkpoint is kept.
    """
    model.train()
    device = runtime.device
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # main, total, steps
    one = torch.ones((), dtype=torch.float64, device=device)
    first_bad = torch.zeros((), dtype=torch.int64, device=device)  # 0: every loss finite so far
    bar = _bar(loader, not runtime.shows,
               desc=f"{run_cfg.run} s{run_cfg.seed} epoch {epoch} train")
    checked = step = 0
    for step, (images, target) in enumerate(bar, start=1):
        if mix_generator is not None:
            images, target, _ = mix_batch(
                images, target, mix_generator, cutmix_prob=run_cfg.augment.cutmix_prob
            )
        images = images.to(device, non_blocking=True)
        if run_cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        target = to_device(target, device)
        with autocast(device, run_cfg.precision):
            outputs = model(images, with_aux=True)
        main_loss, total = main_and_total(outputs, target, run_cfg.model.aux_weight)
        finite = torch.isfinite(total.detach())
        first_bad = torch.where((first_bad == 0) & ~finite, step, first_bad)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        sums += torch.stack([main_loss.detach().double(), total.detach().double(), one])
        if step % CHECK_EVERY == 0:
            _raise_if_non_finite(first_bad, run_cfg, epoch, checked + 1, step)
            checked = step
            if bar.bar is not None:
                bar.set_postfix(loss=f"{float(sums[0] / sums[2]):.4f}")
    if step > checked:
        _raise_if_non_finite(first_bad, run_cfg, epoch, checked + 1, step)
    all_reduce_sum(sums)
    steps = max(float(sums[2]), 1.0)
    return {"train_loss": float(sums[0]) / steps, "train_total_loss": float(sums[1]) / steps}


CHECK_EVERY = 10  # training steps between host checks for a non-finite loss


def _raise_if_non_finite(first_bad: Tensor, run_cfg: RunConfig, epoch: int, lo: int,
                         hi: int) -> None:
    """One host sync: raise if any rank saw a non-finite loss in steps ``lo..hi``."""
    never = torch.iinfo(torch.int64).max
    step = torch.where(first_bad > 0, first_bad, torch.full_like(first_bad, never))
    if dist_info()[1] > 1:
        dist.all_reduce(step, op=dist.ReduceOp.MIN)
    k = int(step)
    if k != never:
        raise NonFiniteLossError(
            f"run {run_cfg.run!r}: non-finite training loss at epoch {epoch}, step {k} (steps "
            f"{lo}-{hi} were checked together); the last good checkpoint is kept. Lower the "
            "learning rate or use precision fp32."
        )


def forward_main(model: nn.Module, images: Tensor, device: torch.device, precision: str,
                 channels_last: bool) -> Tensor:
    """Main-head logits ``(B, K, H, W)`` float32 of one batch ``(B, 3, H, W)`` on ``device``, in
    the run's precision (``device.autocast``) and memory format: the one forward pass of every
    evaluation, :func:`evaluate`'s and the analysis's (``results.analysis.infer``). The caller
    sets eval mode and the grad mode."""
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with autocast(device, precision):
        main, _ = model(images, with_aux=False)
    return main.float()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    run_cfg: RunConfig,
    runtime: Runtime,
    *,
    desc: str = "held-out",
) -> dict[str, float]:
    """Held-out loss (mean per-image main-head loss) and metrics, reduced across ranks.

    VOC: ``loss, miou, pixel_acc``; leaf: ``loss, dice, iou, pixel_acc``.
    """
    model.eval()
    device = runtime.device
    metrics = SegMetrics(run_cfg.num_classes, device=device)
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, images
    for images, target in _bar(loader, not runtime.shows, desc=desc):
        main = forward_main(model, images, device, run_cfg.precision, run_cfg.channels_last)
        target = target.to(device, non_blocking=True)
        per_image = segmentation_loss(main, target, reduction="per_image")
        sums[0] += per_image.double().sum()
        sums[1] += per_image.numel()
        metrics.update(main, target)
    all_reduce_sum(sums)
    all_reduce_sum(metrics.cm)
    out = {"loss": float(sums[0] / sums[1]) if sums[1] > 0 else float("nan")}
    out.update(metrics.compute())
    return out


# ---------------------------------------------------------------- fit


def _history_row(epoch, train, clean, heldout, task, lr, seconds) -> dict[str, Any]:
    row: dict[str, Any] = {"epoch": epoch, **train, "train_clean_loss": clean["loss"],
                           "heldout_loss": heldout["loss"]}
    if task == "leaf":
        row.update(heldout_dice=heldout["dice"], heldout_iou=heldout["iou"])
    else:
        row.update(heldout_miou=heldout["miou"])
    row.update(heldout_pixel_acc=heldout["pixel_acc"], lr=lr, seconds=seconds)
    return row


def fit(
    run_cfg: RunConfig,
    runtime: Runtime | None = None,
    *,
    stop_after_epoch: int | None = None,
    build_model: Callable[..., nn.Module] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> pd.DataFrame:
    """Train ``run_cfg`` into its run folder on ``runtime`` (:class:`~.runtime.Runtime`:
    device, rank, world size, quiet; ``None``: :func:`~.runtime.build_runtime`'s defaults, the
    ``auto`` device, not quiet); returns the history (all completed epochs).

    Finished runs return their history at once; interrupted runs resume from the checkpoint.
    ``stop_after_epoch`` (or env ``PSPNET_STOP_AFTER_EPOCH``) returns early after that epoch's
    checkpoint, leaving the run partial (used by the resume tests). ``build_model(model_cfg,
    num_classes)`` makes the network (tests pass a tiny one); by default
    ``model.build_model(..., arch=run_cfg.arch)`` builds PSPNet or the U-Net baseline.
    ``on_epoch(row)`` (rank 0) gets each new history row, e.g. for a whole-grid ETA
    (``progress.GridClock``).

    The steps: :func:`setup_training` (datasets, network, optimizer, schedule),
    :func:`resume_training` (the checkpoint, if any) and :func:`train_epochs` (the epoch loop,
    a checkpoint after the last epoch and whenever ``checkpoint_seconds`` have passed).
    """
    run = store.open_run(run_cfg)
    if run.done:
        return run.history
    if runtime is None:
        runtime = build_runtime()
    warn_if_emulated(run_cfg.precision, runtime.device.type)  # once per process
    if stop_after_epoch is None and os.environ.get(STOP_ENV):
        stop_after_epoch = int(os.environ[STOP_ENV])
    started_dist = setup_distributed(runtime.device)
    if (runtime.rank, runtime.world) != dist_info():
        raise RuntimeError(f"the runtime's rank/world {runtime.rank}/{runtime.world} is not "
                           f"this process's {dist_info()[0]}/{dist_info()[1]}")
    try:
        lock = store.run_lock(run) if runtime.rank == 0 else contextlib.nullcontext()
        with lock:
            training = setup_training(run_cfg, runtime, build_model=build_model)
            start, history = resume_training(run, training, runtime)
            return train_epochs(run, training, runtime, start=start, history=history,
                                stop_after_epoch=stop_after_epoch, on_epoch=on_epoch)
    finally:
        if started_dist:
            dist.destroy_process_group()


@dataclass
class Training:
    """What :func:`setup_training` builds and the other two steps use: the network (unwrapped:
    what the checkpoint holds), its optimizer and schedule, and the datasets."""

    run_cfg: RunConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    per_iter: bool  # the schedule steps per iteration (else per epoch)
    train_ds: Dataset
    clean_ds: Dataset  # a fixed set of training images, held-out transform: the clean loss
    heldout_ds: Dataset
    batch: int  # per process


def setup_training(
    run_cfg: RunConfig,
    runtime: Runtime,
    *,
    build_model: Callable[..., nn.Module] | None = None,
) -> Training:
    """Datasets (generated first when synthetic and missing), the network seeded from
    ``run_cfg.seed`` on the runtime's device, its optimizer and its schedule."""
    world = runtime.world
    if run_cfg.batch_size % world:
        raise ValueError(
            f"train.batch_size {run_cfg.batch_size} is the global batch and must be divisible "
            f"by the {world} processes"
        )
    batch = run_cfg.batch_size // world
    train_ds, heldout_ds = data.build_datasets(run_cfg)  # generates synthetic data if missing
    clean_ds = clean_training_set(run_cfg, len(train_ds), len(heldout_ds))  # fixed images

    seed_everything(run_cfg.seed)
    if build_model is None:  # the run's own network: PSPNet or the U-Net baseline
        model = model_lib.build_model(run_cfg.model, run_cfg.num_classes, arch=run_cfg.arch)
    else:
        model = build_model(run_cfg.model, run_cfg.num_classes)
    model = model.to(runtime.device)
    if run_cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, run_cfg)
    iters = (len(train_ds) // world) // batch  # DistributedSampler(drop_last) shards first
    if iters == 0:
        raise ParamsError(
            f"train.batch_size: {len(train_ds)} training images of run {run_cfg.run!r} give no "
            f"full batch of {batch} per process (the last partial batch is dropped); use "
            f"train.batch_size <= {len(train_ds) // world * world} or more training images"
        )
    scheduler, per_iter = build_scheduler(optimizer, run_cfg, iters)
    return Training(run_cfg, model, optimizer, scheduler, per_iter, train_ds, clean_ds,
                    heldout_ds, batch)


def clean_training_set(run_cfg: RunConfig, n_train: int, n_heldout: int) -> Dataset:
    """The images the clean training loss is measured on: the first ``min(n_train, n_heldout,
    train.clean_images)`` training images (the split is seeded and shuffled, so a fixed random
    sample),
    through the held-out transform, the same images every epoch. Measured in eval mode like the
    held-out loss, it compares with it directly; the running ``train_loss`` (augmented, mixed,
    dropout on, batch statistics) is what the paper plots (docs/method.md, *Training loss*)."""
    n = min(n_train, n_heldout, run_cfg.clean_images)
    return Subset(data.build_eval_dataset(run_cfg, "train"), range(n))


def resume_training(
    run: store.Run,
    training: Training,
    runtime: Runtime,
) -> tuple[int, list[dict[str, Any]]]:
    """Load the run's checkpoint (if any) into ``training``'s network, optimizer and schedule;
    returns (completed epochs, their history rows). Rank 0 writes the run's ``params.yaml`` and
    ``env.json`` (``runs.start_run``)."""
    run_cfg, world = training.run_cfg, runtime.world
    start, history = 0, []
    if run.checkpoint_path.is_file():
        state = run.checkpoint(map_location=runtime.device)
        store.load_state(training.model, state["model"], run.checkpoint_path)
        store.load_state(training.optimizer, state["optimizer"], run.checkpoint_path, "optimizer")
        store.load_state(training.scheduler, state["scheduler"], run.checkpoint_path, "schedule")
        saved_world = int(state.get("world_size", world))
        if saved_world != world:
            raise ValueError(
                f"run {run_cfg.run!r} in {run.dir} was trained with {saved_world} process(es) "
                f"and cannot resume with {world}: the per-process batch and sampler order "
                f"would change; resume it with {saved_world}, or delete the folder to retrain"
            )
        start, history = int(state["epoch"]), [dict(r) for r in state["history"]]
    if runtime.rank == 0:
        store.start_run(run, runtime.device, world)
        if start and not runtime.quiet:
            tqdm.write(format_resume_line(run_cfg.run, run_cfg.seed, start, run.dir))
    return start, history


def _distributed(model: nn.Module, runtime: Runtime) -> tuple[nn.Module, nn.Module]:
    """(model, the module to train): under DDP the model (with SyncBatchNorm on CUDA) and its
    DistributedDataParallel wrapper; otherwise the model twice."""
    device = runtime.device
    if runtime.world == 1:
        return model, model
    if device.type == "cuda":  # a few images per GPU: BatchNorm statistics over all GPUs
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ddp_model = nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )
    return model, ddp_model


def _epoch_loader(training: Training, epoch: int, runtime: Runtime) -> DataLoader:
    """The training loader of ``epoch``, seeded from (seed, epoch) (tag 1); under DDP this
    rank's shard."""
    run_cfg, rank, world = training.run_cfg, runtime.rank, runtime.world
    sampler = None
    if world > 1:
        sampler = DistributedSampler(training.train_ds, num_replicas=world, rank=rank,
                                     shuffle=True, seed=run_cfg.seed, drop_last=True)
        sampler.set_epoch(epoch)
    return make_loader(training.train_ds, training.batch, train=True,
                       seed=derive_seed(run_cfg.seed, epoch, 1),
                       num_workers=run_cfg.data.num_workers, sampler=sampler)


def train_epochs(
    run: store.Run,
    training: Training,
    runtime: Runtime,
    *,
    start: int,
    history: list[dict[str, Any]],
    stop_after_epoch: int | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> pd.DataFrame:
    """Epochs ``start + 1 .. run_cfg.epochs``: train, step the schedule, evaluate on the
    held-out set, then (rank 0) save the checkpoint when one is due (:func:`_checkpoint_due`),
    mark the run done after the last epoch and print the epoch line
    (``progress.format_epoch_line``). Returns the history so far."""
    run_cfg, rank, world = training.run_cfg, runtime.rank, runtime.world
    model, ddp_model = _distributed(training.model, runtime)
    optimizer, scheduler = training.optimizer, training.scheduler
    heldout_loader, clean_loader = (make_loader(
        Subset(ds, list(range(rank, len(ds), world))) if world > 1 else ds,
        run_cfg.eval_batch_size, train=False, seed=run_cfg.seed,
        num_workers=run_cfg.data.num_workers,
    ) for ds in (training.heldout_ds, training.clean_ds))
    metric = ("dice", "heldout_dice") if run_cfg.task == "leaf" else ("mIoU", "heldout_miou")

    last_save = time.monotonic()
    epochs = _bar(range(start + 1, run_cfg.epochs + 1), not runtime.shows,
                  desc=f"{run_cfg.run} s{run_cfg.seed}", initial=start, total=run_cfg.epochs)
    for epoch in epochs:
        t0 = time.perf_counter()
        # every epoch reseeds from (seed, epoch): a resumed run draws what an uninterrupted one
        # would; the tags 0/1/2 keep the process, loader and mixing streams apart
        seed_everything(derive_seed(run_cfg.seed, epoch, 0, rank))
        loader = _epoch_loader(training, epoch, runtime)
        mix_gen = None
        if run_cfg.regime == "mix":
            mix_gen = torch.Generator().manual_seed(derive_seed(run_cfg.seed, epoch, 2, rank))
        lr = optimizer.param_groups[0]["lr"]
        train = train_one_epoch(
            ddp_model, loader, optimizer, run_cfg, runtime, epoch,
            scheduler=scheduler if training.per_iter else None, mix_generator=mix_gen,
        )
        if not training.per_iter:
            scheduler.step()
        heldout = evaluate(ddp_model, heldout_loader, run_cfg, runtime,
                           desc=f"{run_cfg.run} s{run_cfg.seed} held-out")
        clean = evaluate(ddp_model, clean_loader, run_cfg, runtime,
                         desc=f"{run_cfg.run} s{run_cfg.seed} training, clean")
        row = _history_row(epoch, train, clean, heldout, run_cfg.task, lr,
                           time.perf_counter() - t0)
        history.append(row)
        stopping = stop_after_epoch is not None and epoch >= stop_after_epoch
        if rank == 0 and _checkpoint_due(run_cfg, epoch, stopping, last_save):
            _save(run, model, training, epoch, history, world)
            last_save = time.monotonic()
        if runtime.shows:
            tqdm.write(format_epoch_line(
                run_cfg.run, run_cfg.seed, epoch, run_cfg.epochs,
                train_loss=row["train_loss"], heldout_loss=row["heldout_loss"],
                metric=metric[0], metric_value=row[metric[1]], lr=lr,
                seconds=row["seconds"],
            ))
        if rank == 0 and on_epoch is not None:
            on_epoch(row)
        if world > 1:
            dist.barrier()
        if stopping and epoch < run_cfg.epochs:
            break
    return pd.DataFrame(history)


def _save(run: store.Run, model: nn.Module, training: Training, epoch: int,
          history: list[dict[str, Any]], world: int) -> None:
    """The checkpoint of ``epoch`` (network, optimizer, schedule, history; atomic), and after
    the last epoch the run's ``DONE``."""
    store.save_epoch(run, {
        "model": model.state_dict(),
        "optimizer": training.optimizer.state_dict(),
        "scheduler": training.scheduler.state_dict(),
        "epoch": epoch,
        "history": history,
        "run_hash": run.hash,
        "world_size": world,
    })
    if epoch == training.run_cfg.epochs:
        store.mark_done(run)


def _checkpoint_due(run_cfg: RunConfig, epoch: int, stopping: bool, last_save: float) -> bool:
    """Save after this epoch? Always after the last one and before a requested stop; otherwise
    once ``checkpoint_seconds`` have passed since the last save (0: every epoch)."""
    return (epoch == run_cfg.epochs or stopping
            or time.monotonic() - last_save >= run_cfg.checkpoint_seconds)
