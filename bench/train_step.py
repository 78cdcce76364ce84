"""Training-step benchmark: the smoke step in fp32 and bf16 on this CPU kind, where its time goes,
and what changes it.

The step is the smoke preset's (``params/smoke.yaml``): PSPNet as the preset builds it (plain
ResNet50, output stride 32, 128-channel pyramid branches) trained end to end from random init,
K=21, batch 4, 81x81, SGD momentum 0.9 + weight decay 1e-4, main + 0.4 aux loss (``--size``,
``--batch``, ``--output-stride`` change it).

0. **This CPU kind** (always first; ``--quick`` prints only this): the CPU, torch's kernel level,
   how it computes bf16 (AMX, AVX-512 BF16 or emulated), what ``precision: auto`` chooses and
   why, and one step in fp32 and in bf16 autocast, each as ms and as a share of that
   precision's matmul peak (``bench/machine.py``, measured in the same run). bench/README.md
   keeps a table of the kinds measured.
1. **Profile** (``torch.profiler``, CPU): a few steps in the precision ``auto`` chooses,
   including the data loader (a generated VOC-layout set through the ``affine`` preset, as
   training reads it). Every profiled op's self time is grouped by op kind: convolution,
   BatchNorm, elementwise, interpolation, pooling, loss, autocast casts, optimizer (everything
   under ``Optimizer.step`` / ``zero_grad``), data (everything under the loader's ``next``),
   other (autograd bookkeeping). Also: the step's FLOPs (``FlopCounterMode``) and the share of
   the matmul peak that the whole step and the convolutions alone reach.
2. **Comparison**: the same fixed batch through variants of the step, interleaved over
   ``--rounds`` rounds (the median of each round's steps, best round kept: the machine may be
   shared, so single timings are noisy). ``same weights`` says whether the weights after
   1 + ``--steps`` steps are bit-identical to the baseline's; a few steps can agree by chance,
   so the script ends with a 50-step check of the optimizer variants alone (whether adopting
   one keeps training histories bit-identical).

``--compile`` adds a ``torch.compile`` variant (minutes of compilation on 2 cores; left out by
default). Emulate a smaller CPU kind with ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``
(section 0 shows whether the cap took effect). Never asserts on time.

    .venv/bin/python bench/train_step.py [--quick] [--size 81] [--batch 4] [--steps 3]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import nullcontext
from pathlib import Path

import torch
from machine import describe, matmul_peak
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KINDS = ("convolution", "BatchNorm", "elementwise", "interpolation", "pooling", "loss",
         "autocast casts", "optimizer", "data", "other")

# (kind, substrings of the lower-case op name); the first match wins, so order matters
_BY_NAME = (
    ("loss", ("log_softmax", "nll_loss", "binary_cross_entropy", "cross_entropy")),
    ("convolution", ("conv",)),
    ("BatchNorm", ("batch_norm", "batchnorm")),
    ("interpolation", ("upsample", "interpolate")),
    ("pooling", ("pool",)),
    ("autocast casts", ("aten::to", "aten::_to_copy", "aten::copy_", "tobackward",
                        "tocopybackward")),
    ("elementwise", ("relu", "threshold", "add", "mul", "div", "sub", "fill", "zero",
                     "clamp", "where", "dropout", "bernoulli", "isfinite", "sum", "mean",
                     "sqrt", "aten::cat", "stack", "masked", "lerp", "clone", "contiguous")),
)
_ELEMENTWISE_EXACT = {"eq", "ne", "lt", "gt", "le", "ge", "abs", "neg", "exp", "log", "pow"}


def _kind_of_name(name: str) -> str | None:
    low = name.lower()
    if low.startswith("optimizer.") or low == "optimizer":
        return "optimizer"
    if low == "data" or low.startswith("enumerate(dataloader)"):
        return "data"
    for kind, keys in _BY_NAME:
        if any(k in low for k in keys):
            return kind
    if low.split("::")[-1].rstrip("_") in _ELEMENTWISE_EXACT:
        return "elementwise"
    return None


def kind_of(event) -> str:
    """Op kind of a profiler event: ``data`` / ``optimizer`` if any ancestor is the loader or
    the optimizer, else its own name's kind, else the nearest ancestor's, else ``other``."""
    chain, e = [], event
    while e is not None:
        chain.append(e)
        e = e.cpu_parent
    for e in chain:
        k = _kind_of_name(e.name)
        if k in ("data", "optimizer"):
            return k
    for e in chain:
        k = _kind_of_name(e.name)
        if k is not None:
            return k
    return "other"


# ---------------------------------------------------------------- the step


def build(args, *, channels_last=False, optimizer="sgd", pure_bf16=False):
    import dataclasses

    from pspnet_core.config import load_params
    from pspnet_core.model import build_model

    model_cfg = load_params("smoke").model
    if args.output_stride:
        model_cfg = dataclasses.replace(model_cfg, output_stride=args.output_stride)
    torch.manual_seed(0)
    model = build_model(model_cfg, 21).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if pure_bf16:
        model = model.to(torch.bfloat16)
    params = [p for p in model.parameters() if p.requires_grad]
    kind, _, impl = optimizer.partition(":")
    kw = {"foreach": True} if impl == "foreach" else {"fused": True} if impl == "fused" else {
        "foreach": False}
    if kind == "sgd":
        opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4, **kw)
    else:
        opt = torch.optim.Adam(params, lr=1e-3, **kw)
    return model, opt


def make_step(model, opt, precision, channels_last=False, pure_bf16=False):
    from pspnet_core.losses import main_and_total

    cast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" and not pure_bf16
            else nullcontext())

    def step(x, y):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if pure_bf16:
            x = x.to(torch.bfloat16)
        with cast:
            out = model(x, with_aux=True)
        _, total = main_and_total(out, y, 0.4)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()

    return step


def weights_digest(model) -> str:
    h = hashlib.sha1()
    for t in model.state_dict().values():
        h.update(t.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def fixed_batch(args):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=g)
    y = torch.randint(0, 21, (args.batch, args.size, args.size), generator=g)
    return x, y


def step_flops(args) -> tuple[float, float]:
    """(all FLOPs, convolution FLOPs) of one training step (the same in either precision)."""
    model, opt = build(args)
    step = make_step(model, opt, "fp32")
    x, y = fixed_batch(args)
    with FlopCounterMode(display=False) as counter:
        step(x, y)
    conv = sum(n for op, n in counter.get_flop_counts().get("Global", {}).items()
               if "convolution" in str(op))
    return float(counter.get_total_flops()), float(conv)


# ---------------------------------------------------------------- 1. profile


def this_kind(args, peaks: dict[str, float]) -> None:
    """Section 0: the CPU kind, what ``auto`` chooses, and one step in each precision."""
    from pspnet_core.system import precision

    chosen = precision.resolve_precision("auto", "cpu")
    print(f"### This CPU kind\n\ntorch kernels {torch.backends.cpu.get_cpu_capability()} "
          f"(from the flags: {precision.kernel_level()}); native bf16: "
          f"{precision.cpu_bf16_kind() or 'none (emulated)'}; precision auto -> "
          f"{chosen.describe()}\n")
    flops, _ = step_flops(args)
    x, y = fixed_batch(args)
    print(f"| precision | ms/step (batch {args.batch}, {args.size}x{args.size}) | GFLOP/s | "
          "% of that precision's matmul peak |")
    print("|---|---|---|---|")
    native = precision.cpu_bf16_kind() is not None
    for prec in ("fp32", "bf16"):
        dt, _ = time_variant(args, {"precision": prec}, x, y, steps=args.kind_steps)
        share = (f"{100 * flops / dt / 1e9 / peaks[prec]:.0f} %" if prec == "fp32" or native
                 else "n/a (bf16 emulated: its matmul 'peak' is no peak)")
        print(f"| {prec}{' (auto)' if prec == chosen.name else ''} | {dt * 1e3:.0f} | "
              f"{flops / dt / 1e9:.0f} | {share} |", flush=True)
    print()


def profile_step(args, peak: float, prec: str) -> None:
    from pspnet_core.config import AugmentConfig
    from pspnet_core.data.augment import build_transform
    from pspnet_core.data.loading import make_loader
    from pspnet_core.data.synthetic import ensure_synthetic_voc
    from pspnet_core.data.voc import VOCDataset, voc_pairs

    flops, conv_flops = step_flops(args)
    model, opt = build(args)
    step = make_step(model, opt, prec)
    n = args.profile_steps
    with tempfile.TemporaryDirectory() as tmp:
        root = ensure_synthetic_voc(Path(tmp) / "voc", args.batch * (n + 1) + 4, 128, seed=0)
        ds = VOCDataset(voc_pairs(root), build_transform("affine", args.size, AugmentConfig()))
        it = iter(make_loader(ds, args.batch, train=True, seed=0))
        x, y = next(it)
        step(x, y)  # warm-up (oneDNN primitive cache, allocator)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            for _ in range(n):
                with record_function("data"):
                    x, y = next(it)
                with record_function("step"):
                    step(x, y)
            wall = (time.perf_counter() - t0) / n
    by_kind: dict[str, float] = defaultdict(float)
    for e in prof.events():
        by_kind[kind_of(e)] += e.self_cpu_time_total / 1e3 / n  # ms per step
    traced = sum(by_kind.values())
    print(f"### Where a {prec} step goes ({n} profiled steps incl. the loader, batch {args.batch}, "
          f"{args.size}x{args.size}, full network trained, SGD)\n")
    print(f"wall {wall * 1e3:.0f} ms/step under the profiler; profiled ops' self time "
          f"{traced:.0f} ms/step (the profiler itself adds overhead to small ops)\n")
    print("| op kind | ms/step | share of profiled time |")
    print("|---|---|---|")
    for k in KINDS:
        print(f"| {k} | {by_kind.get(k, 0.0):.0f} | {100 * by_kind.get(k, 0.0) / traced:.0f} % |")
    conv_ms = by_kind.get("convolution", 0.0)
    top = defaultdict(float)
    for e in prof.events():
        if kind_of(e) == "other":
            top[e.name] += e.self_cpu_time_total / 1e3 / n
    others = ", ".join(f"{k} {v:.0f} ms" for k, v in sorted(top.items(), key=lambda kv: -kv[1])[:3])
    print(f"\n'other' is mostly: {others}")
    print(f"\nstep: {flops / 1e9:.1f} GFLOP ({100 * conv_flops / flops:.0f} % in convolutions); "
          f"at {wall * 1e3:.0f} ms/step that is {flops / wall / 1e9:.0f} GFLOP/s = "
          f"{100 * flops / wall / 1e9 / peak:.0f} % of the {prec} matmul peak; the "
          f"convolutions alone run at {conv_flops / (conv_ms / 1e3) / 1e9:.0f} GFLOP/s = "
          f"{100 * conv_flops / (conv_ms / 1e3) / 1e9 / peak:.0f} % of it\n")


# ---------------------------------------------------------------- 2. comparison


def variants(args) -> list[dict]:
    v = [
        dict(name="bf16 (smoke today: autocast, SGD for-loop, all threads)", precision="bf16"),
        dict(name="fp32", precision="fp32"),
        dict(name="bf16 + channels_last", precision="bf16", channels_last=True),
        dict(name="bf16 + SGD foreach", precision="bf16", optimizer="sgd:foreach"),
        dict(name="bf16 + SGD fused", precision="bf16", optimizer="sgd:fused"),
        dict(name="bf16, 1 thread", precision="bf16", threads=1),
        dict(name="bf16 Adam for-loop (the adam runs)", precision="bf16", optimizer="adam",
             base="bf16 Adam for-loop (the adam runs)"),
        dict(name="bf16 Adam foreach", precision="bf16", optimizer="adam:foreach",
             base="bf16 Adam for-loop (the adam runs)"),
        dict(name="bf16 Adam fused", precision="bf16", optimizer="adam:fused",
             base="bf16 Adam for-loop (the adam runs)"),
        dict(name="pure bf16 weights, no autocast (BatchNorm in bf16; not adoptable)",
             precision="bf16", pure_bf16=True),
    ]
    if args.compile:
        v.append(dict(name="bf16 + torch.compile", precision="bf16", compile=True))
    return v


def time_variant(args, var: dict, x, y, steps: int | None = None) -> tuple[float, str]:
    threads = torch.get_num_threads()
    if var.get("threads"):
        torch.set_num_threads(var["threads"])
    try:
        model, opt = build(args, channels_last=var.get("channels_last", False),
                           optimizer=var.get("optimizer", "sgd"),
                           pure_bf16=var.get("pure_bf16", False))
        if var.get("compile"):
            model = torch.compile(model)
        step = make_step(model, opt, var["precision"], var.get("channels_last", False),
                         var.get("pure_bf16", False))
        torch.manual_seed(1)  # dropout draws: the same for every variant
        step(x, y)  # warm-up
        times = []
        for _ in range(steps or args.steps):
            t0 = time.perf_counter()
            step(x, y)
            times.append(time.perf_counter() - t0)
        return statistics.median(times), weights_digest(model)
    finally:
        torch.set_num_threads(threads)


def compare(args, peak_bf16: float, peak_fp32: float) -> None:
    flops, _ = step_flops(args)
    x, y = fixed_batch(args)
    vs = variants(args)
    best: dict[str, float] = {}
    digest: dict[str, str] = {}
    for _ in range(args.rounds):
        for var in vs:
            dt, d = time_variant(args, var, x, y)
            best[var["name"]] = min(best.get(var["name"], float("inf")), dt)
            digest.setdefault(var["name"], d)
    base_name = vs[0]["name"]
    print(f"### Variants (fixed batch {args.batch}, {args.size}x{args.size}; median of "
          f"{args.steps} steps after 1 warm-up, best of {args.rounds} interleaved rounds)\n")
    print("| variant | ms/step | images/s | GFLOP/s | % of matmul peak | vs bf16 | same weights |")
    print("|---|---|---|---|---|---|---|")
    for var in vs:
        name, dt = var["name"], best[var["name"]]
        peak = peak_fp32 if var["precision"] == "fp32" else peak_bf16
        ref = var.get("base", base_name)
        if var["precision"] == "fp32" or var.get("pure_bf16"):
            same = "n/a (other numerics)"
        elif name == ref:
            same = "(reference)"
        else:
            same = "yes" if digest[name] == digest[ref] else "no"
        print(f"| {name} | {dt * 1e3:.0f} | {args.batch / dt:.2f} | {flops / dt / 1e9:.0f} | "
              f"{100 * flops / dt / 1e9 / peak:.0f} % | {best[base_name] / dt:.2f}x | {same} |",
              flush=True)
    print("\n(fp32's % is of the fp32 peak; 'vs bf16' > 1 is faster than the smoke step today)")


def optimizer_identity(steps: int = 50) -> None:
    """Are foreach / fused optimizer steps bit-identical to the for-loop over ``steps`` steps
    (the same seeded gradients; the smoke SGD and Adam settings)? Independent of machine load."""
    def run(kind: str, impl: str) -> list[torch.Tensor]:
        torch.manual_seed(0)
        shapes = [(64, 3, 3, 3), (64,), (128, 64, 3, 3), (21, 128, 1, 1), (21,)]
        ps = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
        kw = {"foreach": False} if impl == "for-loop" else {impl: True}
        opt = (torch.optim.SGD(ps, lr=0.01, momentum=0.9, weight_decay=1e-4, **kw)
               if kind == "SGD" else torch.optim.Adam(ps, lr=1e-3, **kw))
        g = torch.Generator().manual_seed(1)
        for _ in range(steps):
            for p in ps:
                p.grad = torch.randn(p.shape, generator=g)
            opt.step()
        return [p.detach() for p in ps]

    cells = []
    for kind in ("SGD", "Adam"):
        base = run(kind, "for-loop")
        for impl in ("foreach", "fused"):
            same = all(torch.equal(a, b) for a, b in zip(base, run(kind, impl), strict=True))
            cells.append(f"{kind} {impl}: {'bit-identical' if same else 'differs'}")
    print(f"optimizer steps vs the for-loop over {steps} steps: " + "; ".join(cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=81)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--profile-steps", type=int, default=3)
    ap.add_argument("--output-stride", type=int, choices=(8, 32), default=None,
                    help="the backbone's output stride (default: the smoke preset's)")
    ap.add_argument("--kind-steps", type=int, default=3, help="timed steps per precision in 0.")
    ap.add_argument("--quick", action="store_true", help="section 0 only (this CPU kind)")
    ap.add_argument("--compile", action="store_true", help="add a torch.compile variant (slow)")
    ap.add_argument("--no-compare", action="store_true", help="profile only")
    args = ap.parse_args()
    t_start = time.perf_counter()
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"{describe()}; {time.strftime('%Y-%m-%d')}\n"
          f"matmul peak (2048^2, this run): fp32 {peaks['fp32']:.1f} GFLOP/s, "
          f"bf16 {peaks['bf16']:.1f} GFLOP/s\n")
    this_kind(args, peaks)
    if args.quick:
        return
    from pspnet_core.system.precision import resolve_precision

    prec = resolve_precision("auto", "cpu").name
    profile_step(args, peaks[prec], prec)
    if not args.no_compare:
        compare(args, peaks["bf16"], peaks["fp32"])
    print()
    optimizer_identity()
    print(f"\n(total {time.perf_counter() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
