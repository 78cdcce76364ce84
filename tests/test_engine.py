"""Engine recipes: optimizer, poly schedule, epochs with Mixup/CutMix, evaluation, bf16,
non-finite loss, per-image losses, DDP under torchrun (gloo, 2 CPU processes)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from tiny_preset import ROOT, subprocess_env, write_tiny
from torch import nn

from pspnet_core import data
from pspnet_core.config import load_params, resolve_run
from pspnet_core.losses import segmentation_loss
from pspnet_core.model import build_model
from pspnet_core.results import analysis
from pspnet_core.store import runs
from pspnet_core.train import engine
from pspnet_core.train.grid import get_grid, get_runs
from pspnet_core.train.runtime import Runtime

CPU = Runtime(torch.device("cpu"), quiet=True)  # the runtime the unit tests train and evaluate on


class Tiny(nn.Module):
    """A 1x1-conv 'segmenter' with the PSPNet forward signature, for fast engine tests."""

    def __init__(self, k: int, fill: float | None = None):
        super().__init__()
        self.conv = nn.Conv2d(3, k, 1)
        self.aux = nn.Conv2d(3, k, 1)
        self.fill = fill

    def forward(self, x, with_aux=None):
        with_aux = self.training if with_aux is None else with_aux
        main = self.conv(x)
        if self.fill is not None:
            main = main * 0 + self.fill
        return main, (self.aux(x) if with_aux else None)


class NaNAfter(Tiny):
    """Tiny whose main logits turn NaN from training forward ``after + 1`` on (a diverged model):
    what a too-high learning rate does, reaching the real loss (``losses.main_and_total``)."""

    def __init__(self, k: int, after: int):
        super().__init__(k)
        self.after, self.train_steps = after, 0

    def forward(self, x, with_aux=None):
        main, aux = super().forward(x, with_aux)
        if self.training:
            self.train_steps += 1
            if self.train_steps > self.after:
                main = main * float("nan")
        return main, aux


class FromInput(nn.Module):
    """Logits read off the input: channel 0 holds the predicted class (K > 1) or the logit
    (K = 1), so a test states its prediction pixel by pixel."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k
        self.p = nn.Parameter(torch.zeros(()))  # a device to find

    def forward(self, x, with_aux=None):
        if self.k == 1:
            return x[:, :1] + self.p, None
        return nn.functional.one_hot(x[:, 0].long(), self.k).permute(0, 3, 1, 2).float() * 20, None


def rows(values) -> torch.Tensor:
    """A (1, 3, 1, W) 'image' whose channel 0 is ``values``."""
    return torch.tensor(values, dtype=torch.float32).view(1, 1, 1, -1).expand(1, 3, 1, -1)


def tiny_cfg(tmp_path, run="sgd_mix", **sections):
    return resolve_run(load_params(write_tiny(tmp_path, **sections)), run)


def batches(k, n=3, b=2, size=8, leaf=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randn(b, 3, size, size, generator=g)
        if leaf:
            y = (torch.rand(b, size, size, generator=g) > 0.5).float()
        else:
            y = torch.randint(0, k, (b, size, size), generator=g)
            y[:, 0] = 255
        out.append((x, y))
    return out


# ---------------------------------------------------------------- recipes


def test_optimizer_gets_only_trainable_params(tmp_path):
    rc = tiny_cfg(tmp_path)
    model = Tiny(21)
    model.aux.weight.requires_grad_(False)
    opt = engine.build_optimizer(model, rc)
    params = [p for g in opt.param_groups for p in g["params"]]
    assert len(params) == 3 and all(p.requires_grad for p in params)
    g = opt.param_groups[0]
    assert isinstance(opt, torch.optim.SGD)
    assert (g["lr"], g["momentum"], g["weight_decay"]) == (0.01, 0.0, 1e-4)  # the paper: none
    adam = engine.build_optimizer(model, tiny_cfg(tmp_path, "adam_none", adam={"lr": 0.01}))
    g = adam.param_groups[0]
    assert isinstance(adam, torch.optim.Adam)
    assert (g["lr"], g["betas"], g["weight_decay"]) == (0.01, (0.9, 0.999), 1e-4)


def test_frozen_backbone_is_not_optimized(tmp_path):
    rc = tiny_cfg(tmp_path)
    model = build_model(rc.model.__class__(weights=None, freeze_backbone=False), 21)
    for p in model.layer4.parameters():
        p.requires_grad_(False)
    opt = engine.build_optimizer(model, rc)
    n_opt = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n_opt == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n_opt < sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("step", ["epoch", "iter"])
def test_poly_schedule(tmp_path, step):
    rc = tiny_cfg(tmp_path, sgd={"poly_step": step}, train={"epochs": 4})
    opt = engine.build_optimizer(Tiny(21), rc)
    sched, per_iter = engine.build_scheduler(opt, rc, iters_per_epoch=5)
    assert per_iter == (step == "iter")
    total = 4 * (5 if per_iter else 1)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [0.01 * (1 - t / total) ** 0.9 for t in range(total)]
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_adam_lr_is_constant(tmp_path):
    rc = tiny_cfg(tmp_path, "adam_none")
    opt = engine.build_optimizer(Tiny(21), rc)
    sched, _ = engine.build_scheduler(opt, rc, 3)
    for _ in range(3):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == rc.optim.lr


def test_adam_poly_schedule_steps_per_epoch(tmp_path):
    """adam.schedule: poly is the SGD listing's LambdaLR, (1 - epoch/E) ** adam.poly_power."""
    rc = tiny_cfg(tmp_path, "adam_none", adam={"lr": 0.01, "schedule": "poly"},
                  train={"epochs": 4})
    opt = engine.build_optimizer(Tiny(21), rc)
    sched, per_iter = engine.build_scheduler(opt, rc, iters_per_epoch=5)
    assert not per_iter
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.01 * (1 - t / 4) ** 0.9 for t in range(4)], rel=1e-12)
    assert rc.optim.poly_power == 0.9


def test_train_epoch_with_mix_is_reproducible_and_uses_mixed_loss(tmp_path):
    rc = tiny_cfg(tmp_path)

    def one(seed):
        torch.manual_seed(0)  # same initial weights and batches for every call
        model = Tiny(21)
        opt = engine.build_optimizer(model, rc)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        out = engine.train_one_epoch(model, batches(21), opt, rc, CPU, 1,
                                     mix_generator=gen)
        return out, model.conv.weight.detach().clone()

    a, wa = one(1)
    b, wb = one(1)
    c, _ = one(2)
    plain, wp = one(None)  # the same model and batches without mixing
    assert a == b and torch.equal(wa, wb)
    assert a != c and a["train_loss"] != plain["train_loss"] and not torch.equal(wa, wp)
    assert a["train_total_loss"] > a["train_loss"] > 0  # + 0.4 * aux


def test_evaluate_against_hand_counts(tmp_path):
    """mIoU / pixel accuracy / Dice / IoU from one confusion matrix summed over all batches,
    checked against numbers counted by hand."""
    cpu = CPU
    rc = tiny_cfg(tmp_path)
    k = rc.num_classes
    # VOC, two batches of one 1x4 / 1x3 image (255 = ignore):
    #   label 0 0 1 1 | pred 0 1 1 1        label 2 2 255 | pred 0 2 2
    # class 0: TP 1, FN 1, FP 1 -> 1/3; class 1: TP 2, FP 1 -> 2/3; class 2: TP 1, FN 1 -> 1/2;
    # the other 18 classes are absent (no label, no prediction) and do not count
    # pixel accuracy: 4 right of the 6 counted pixels (the ignore pixel is skipped)
    loader = [(rows([0, 1, 1, 1]), torch.tensor([[[0, 0, 1, 1]]])),
              (rows([0, 2, 2]), torch.tensor([[[2, 2, 255]]]))]
    out = engine.evaluate(FromInput(k), loader, rc, cpu)
    assert out["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3, abs=1e-12)
    assert out["pixel_acc"] == pytest.approx(4 / 6, abs=1e-12)
    # a perfect prediction
    perfect = [(rows([0, 0, 1, 1]), torch.tensor([[[0, 0, 1, 1]]]))]
    out = engine.evaluate(FromInput(k), perfect, rc, cpu)
    assert out["miou"] == 1.0 and out["pixel_acc"] == 1.0 and out["loss"] < 1e-6
    # held-out loss: the mean over images of per-image losses (not over batches or pixels)
    model = Tiny(k)
    loader = batches(k)
    out = engine.evaluate(model, loader, rc, cpu)
    with torch.no_grad():
        per = torch.cat([segmentation_loss(model(x, False)[0], y, reduction="per_image")
                         for x, y in loader])
    assert out["loss"] == pytest.approx(float(per.mean()), rel=1e-5)
    assert not model.training
    # leaf (K = 1), logit > 0 is disease, two batches:
    #   label 1 1 1 0 | logit + + - +      label 0 | logit -
    # TP 2, FN 1, FP 1, TN 1: Dice 2*2/(4+1+1) = 2/3, IoU 2/(2+1+1) = 1/2, pixel acc 3/5
    leaf = tiny_cfg(tmp_path, "leaf_sgd_affine")
    assert leaf.num_classes == 1
    loader = [(rows([2.0, 2.0, -2.0, 2.0]), torch.tensor([[[1.0, 1.0, 1.0, 0.0]]])),
              (rows([-2.0]), torch.tensor([[[0.0]]]))]
    out = engine.evaluate(FromInput(1), loader, leaf, cpu)
    assert set(out) == {"loss", "dice", "iou", "pixel_acc"}
    assert out["dice"] == pytest.approx(2 / 3, abs=1e-12)
    assert out["iou"] == pytest.approx(1 / 2, abs=1e-12)
    assert out["pixel_acc"] == pytest.approx(3 / 5, abs=1e-12)
    # BCE with logits +-2: right pixels log(1 + e^-2), wrong ones log(1 + e^2); image 1 has
    # 2 wrong of 4, image 2 none wrong
    right, wrong = math.log1p(math.exp(-2)), math.log1p(math.exp(2))
    assert out["loss"] == pytest.approx(((2 * right + 2 * wrong) / 4 + right) / 2, rel=1e-5)


def test_bf16_channels_last_step_on_pspnet(tmp_path):
    # stride 32: a third of the dilated step, which an AVX2-only CPU runs emulated in bf16
    rc = tiny_cfg(tmp_path, precision="bf16", channels_last=True, model={"output_stride": 32})
    torch.manual_seed(0)
    model = build_model(rc.model, 21).to(memory_format=torch.channels_last)
    opt = engine.build_optimizer(model, rc)
    loader = batches(21, n=1, b=2, size=65)
    out = engine.train_one_epoch(model, loader, opt, rc, CPU, 1)
    assert math.isfinite(out["train_loss"])
    logits = analysis.predict(model, loader[0][0], "bf16", channels_last=True)
    assert logits.dtype == torch.float32 and logits.shape == (2, 21, 65, 65)
    assert not model.training


def test_non_finite_loss_names_epoch_and_step(tmp_path):
    rc = tiny_cfg(tmp_path)
    model = Tiny(21, fill=float("nan"))
    opt = engine.build_optimizer(model, rc)
    with pytest.raises(engine.NonFiniteLossError, match="epoch 4, step 1"):
        engine.train_one_epoch(model, batches(21), opt, rc, CPU, 4)


@pytest.mark.slow
def test_fit_non_finite_keeps_last_good_checkpoint(tmp_path):
    """Epoch 1 trains (2 steps of a tiny stand-in model), then the model diverges: epoch 2's
    first step is NaN -> an error naming epoch 2, step 1; the epoch-1 checkpoint is kept."""
    rc = tiny_cfg(tmp_path, checkpoint_seconds=0)  # a checkpoint after every epoch
    with pytest.raises(engine.NonFiniteLossError, match="epoch 2, step 1"):
        engine.fit(rc, build_model=lambda cfg, k: NaNAfter(k, after=2))
    run = runs.open_run(rc)
    assert run.status == "partial" and not run.done
    assert run.checkpoint()["epoch"] == 1 and list(run.history["epoch"]) == [1]
    assert all(math.isfinite(v.float().sum()) for v in run.checkpoint()["model"].values())


@pytest.mark.parametrize(("seconds", "stop", "saved"), [
    (1e6, None, [3]),       # nothing due before the last epoch
    (0, None, [1, 2, 3]),   # 0: after every epoch
    (1e6, 1, [1]),          # a requested stop always saves first
])
def test_checkpoints_are_written_when_due(tmp_path, monkeypatch, seconds, stop, saved):
    """``checkpoint_seconds``: the last epoch and a stop always save; between them a save is
    due only once that many seconds have passed since the previous one."""
    rc = tiny_cfg(tmp_path, checkpoint_seconds=seconds)
    epochs: list[int] = []
    save = runs.save_epoch
    monkeypatch.setattr(runs, "save_epoch", lambda r, state: (epochs.append(state["epoch"]),
                                                              save(r, state)))
    hist = engine.fit(rc, build_model=lambda cfg, k: Tiny(k), stop_after_epoch=stop)
    assert epochs == saved and len(hist) == saved[-1] == runs.open_run(rc).epochs_done
    assert runs.open_run(rc).done == (saved[-1] == rc.epochs)


@pytest.mark.slow
def test_leaf_history_columns(tmp_path):
    rc = tiny_cfg(tmp_path, "leaf_sgd_affine")
    hist = engine.fit(rc, build_model=lambda cfg, k: Tiny(k))
    assert list(hist.columns) == ["epoch", "train_loss", "train_total_loss", "train_clean_loss",
                                  "heldout_loss", "heldout_dice", "heldout_iou",
                                  "heldout_pixel_acc", "lr", "seconds"]
    assert len(hist) == rc.epochs == 2 and runs.open_run(rc).done


def test_clean_training_loss_is_the_held_out_measurement_on_fixed_training_images(tmp_path):
    """train_clean_loss of the last epoch is exactly what evaluate gives for the finished
    network on the first min(n_train, n_heldout) training images through the held-out
    transform (eval mode, no augmentation); the running train_loss is another measurement."""
    rc = tiny_cfg(tmp_path, "sgd_mix")
    hist = engine.fit(rc, build_model=lambda cfg, k: Tiny(k))
    train_ds, heldout_ds = data.build_datasets(rc)
    clean = engine.clean_training_set(rc, len(train_ds), len(heldout_ds))
    assert len(clean) == min(len(train_ds), len(heldout_ds))
    first = clean[0][0]
    assert torch.equal(first, data.build_eval_dataset(rc, "train")[0][0])  # no augmentation
    model = Tiny(rc.num_classes)
    model.load_state_dict(runs.open_run(rc).checkpoint()["model"])
    loader = data.make_loader(clean, rc.eval_batch_size, train=False, seed=rc.seed)
    again = engine.evaluate(model, loader, rc, CPU)
    assert again["loss"] == pytest.approx(hist["train_clean_loss"].iloc[-1], rel=1e-6)
    assert hist["train_clean_loss"].iloc[-1] != pytest.approx(hist["train_loss"].iloc[-1])


# ---------------------------------------------------------------- using a trained run


@pytest.mark.slow
def test_per_image_losses(reference_run):
    _, _, run = reference_run
    df = analysis.per_image_losses(run, "train", n=3, seed=5, device="cpu")
    assert list(df.columns) == ["index", "id", "loss"] and len(df) == 3
    assert df.equals(analysis.per_image_losses(run, "train", n=3, seed=5, device="cpu"))
    ds = data.build_eval_dataset(run.run_cfg, "train")
    assert list(df["id"]) == [ds.ids[i] for i in df["index"]]
    # recompute one by hand
    i = int(df["index"].iloc[0])
    x, y = ds[i]
    logits = analysis.predict(analysis.load_model(run), x)
    want = float(segmentation_loss(logits, y[None], reduction="per_image")[0])
    assert df["loss"].iloc[0] == pytest.approx(want, rel=1e-5)
    held = analysis.per_image_losses(run, "heldout", n=100, seed=0, device="cpu")
    assert len(held) == run.run_cfg.data.n_heldout  # capped at the dataset size
    assert held["loss"].notna().all()


@pytest.mark.slow
def test_ddp_two_cpu_processes_write_one_history(reference_run, tmp_path):
    ref_home, _, _ = reference_run
    params = write_tiny(tmp_path, data_root=ref_home / "data", train={"batch_size": 4})
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "pspnet_core.train", "--params", str(params),
         "sgd_mix"],
        cwd=ROOT, env=subprocess_env(tmp_path, OMP_NUM_THREADS="1"), capture_output=True,
        text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("sgd_mix: done") == 1  # rank 0 reports
    run = runs.open_run(resolve_run(load_params(params), "sgd_mix"))
    assert run.done and run.env["world_size"] == 2
    hist = run.history
    assert list(hist["epoch"]) == [1, 2, 3] and hist.notna().all().all()
    files = sorted(p.name for p in (tmp_path / "runs").rglob("*") if p.is_file())
    assert files == sorted([".lock", "DONE", "checkpoint.pt", "env.json", "history.csv",
                            "params.yaml"])
    assert run.checkpoint()["world_size"] == 2
    # metrics are reduced across the ranks: one process evaluating the final weights on the
    # whole held-out set reproduces the last epoch's held-out numbers
    rc = run.run_cfg
    _, heldout = data.build_datasets(rc)
    loader = data.make_loader(heldout, rc.eval_batch_size, train=False, seed=rc.seed)
    single = engine.evaluate(analysis.load_model(run, "cpu"), loader, rc, CPU)
    last = hist.iloc[-1]
    assert single["loss"] == pytest.approx(last["heldout_loss"], rel=1e-5)
    assert single["miou"] == pytest.approx(last["heldout_miou"], abs=1e-9)
    assert single["pixel_acc"] == pytest.approx(last["heldout_pixel_acc"], abs=1e-9)


def test_unet_runs_get_their_own_nesterov_sgd():
    """unet_sgd (nnU-Net's recipe) reaches torch's SGD; PSPNet runs keep the preset's sgd."""
    cfg = load_params("paper")
    net = nn.Conv2d(3, 2, 1)
    unet_opt = engine.build_optimizer(net, resolve_run(cfg, "unet_none"))
    assert unet_opt.defaults["nesterov"] is True and unet_opt.defaults["momentum"] == 0.99
    assert unet_opt.defaults["weight_decay"] == 3e-5
    psp_opt = engine.build_optimizer(net, resolve_run(cfg, "sgd_none"))
    assert psp_opt.defaults["nesterov"] is False and psp_opt.defaults["momentum"] == 0.0


@pytest.mark.parametrize("run", ["sgd_none", "adam_affine", "unet_none"])
def test_foreach_optimizer_steps_equal_the_per_parameter_loop(run):
    """build_optimizer uses foreach kernels for speed; they must not change a single bit."""
    import copy

    rc = resolve_run(load_params("paper"), run)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 2, 1))
    fast, slow = copy.deepcopy(net), copy.deepcopy(net)
    opt_fast = engine.build_optimizer(fast, rc)
    assert opt_fast.defaults["foreach"] is True
    opt_slow = type(opt_fast)(slow.parameters(), **{**opt_fast.defaults, "foreach": False})
    for i in range(20):
        x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(i))
        for m, o in ((fast, opt_fast), (slow, opt_slow)):
            o.zero_grad()
            m(x).square().mean().backward()
            o.step()
    assert all(torch.equal(p, q) for p, q in zip(fast.parameters(), slow.parameters(),
                                                 strict=True))


def test_get_grid_trains_what_is_missing_with_the_whole_grids_eta(tmp_path, capsys):
    """Two runs x one seed, neither trained: the grid's line first, then both train (a stand-in
    network), each followed by the grid's line; asked again, nothing trains and nothing is
    printed. The one grid loop: pspnet-train prints the same lines."""
    cfg = load_params(write_tiny(tmp_path, quiet=False))
    grid = get_grid(cfg, ["sgd_mix", "adam_none"], build_model=lambda run_cfg, k: Tiny(k))
    assert list(grid) == ["sgd_mix", "adam_none"] and all(
        list(by_seed) == [0] and by_seed[0].done for by_seed in grid.values())
    out = capsys.readouterr()
    lines = [ln for ln in (out.out + out.err).splitlines() if ln.startswith("grid: ")]
    assert lines[0] == "grid: 0/2 (run, seed) done, 6 of 6 epochs left, time left known after " \
        "the first epoch"
    assert lines[1].startswith("grid: 1/2 (run, seed) done, 3 of 6 epochs left, about ")
    assert lines[2] == "grid: 2/2 (run, seed) done"
    again = get_grid(cfg, ["sgd_mix", "adam_none"])
    assert {n: r[0].dir for n, r in again.items()} == {n: r[0].dir for n, r in grid.items()}
    out = capsys.readouterr()
    assert "grid:" not in out.out + out.err and "epoch" not in out.out + out.err
    assert get_runs(cfg, "sgd_mix")[0].dir == grid["sgd_mix"][0].dir


def test_grid_builds_the_runtime_from_the_preset_and_its_keywords(tmp_path, monkeypatch):
    """``get_grid`` / ``get_run`` train with one Runtime: the preset's ``device`` / ``quiet``
    settings, replaced by ``device=`` / ``quiet=`` (notebooks), or a ``runtime=`` given."""
    from pspnet_core.train import grid

    cfg = load_params(write_tiny(tmp_path))  # quiet: true
    got = []
    monkeypatch.setattr(engine, "fit", lambda run_cfg, runtime, **kw: got.append(runtime))
    grid.get_run(cfg, "adam_none")
    grid.get_run(cfg, "adam_none", quiet=False, device="cpu")
    grid.get_grid(cfg, ["adam_none", "sgd_mix"], runtime=CPU)
    assert got[0] == Runtime(torch.device("cpu"), 0, 1, quiet=True)
    assert got[1] == Runtime(torch.device("cpu"), 0, 1, quiet=False)
    assert got[2:] == [CPU, CPU]
