"""The GPU path, checked on the CPU: the choices the engine makes for CUDA, tested without a GPU.

- autocast: ``precision: bf16`` on CUDA is ``torch.autocast("cuda", torch.bfloat16)`` (no
  GradScaler: bf16 keeps fp32's exponent range); fp32 is no autocast at all;
- loaders pin host memory exactly when CUDA is available, and batches go to the device with
  ``non_blocking=True`` (a copy from pinned memory overlaps the previous step);
- cuDNN: the engine leaves ``cudnn.benchmark`` and ``cudnn.deterministic`` at torch's defaults
  (off, off) and enables no deterministic-algorithms mode: on CUDA a rerun is close to, not bit
  for bit, the first (bilinear upsampling's backward accumulates with atomics); the bit-for-bit
  guarantees (resume, seeds, LocalExecutor jobs) are the CPU's;
- DDP: NCCL with ``torch.cuda.set_device(cuda:LOCAL_RANK)`` on CUDA, gloo on the CPU;
  SyncBatchNorm on CUDA only, and the conversion keeps the optimizer's parameters, the frozen
  layers frozen (also in ``frozen_bn: eval``) and the checkpoint's keys.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import warnings
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from torch import nn

from pspnet_core.data.loading import make_loader
from pspnet_core.model import PSPNet
from pspnet_core.system.device import autocast, to_device
from pspnet_core.train import engine
from pspnet_core.train.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]


def test_bf16_on_cuda_is_cuda_autocast_in_bfloat16():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available": the object is what we check
        ctx = autocast(torch.device("cuda", 0), "bf16")
    assert isinstance(ctx, torch.autocast)
    assert ctx.device == "cuda" and ctx.fast_dtype == torch.bfloat16
    assert isinstance(autocast(torch.device("cuda", 0), "fp32"), contextlib.nullcontext)
    with pytest.raises(ValueError, match="fp16"):
        autocast(torch.device("cuda", 0), "fp16")  # fp16 would need a GradScaler: not offered


def test_loaders_pin_memory_exactly_when_cuda_is_available(monkeypatch):
    ds = torch.utils.data.TensorDataset(torch.zeros(4, 3, 2, 2), torch.zeros(4, 2, 2))
    for available in (True, False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda a=available: a)
        for train in (True, False):
            assert make_loader(ds, 2, train=train, seed=0).pin_memory is available


class _Mixed(NamedTuple):
    a: torch.Tensor
    b: torch.Tensor
    lam: float


def test_batches_go_to_the_device_non_blocking(monkeypatch):
    calls = []
    real = torch.Tensor.to

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get("non_blocking"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", spy)
    out = to_device(_Mixed(torch.zeros(2), torch.ones(2), 0.5), torch.device("cpu"))
    assert isinstance(out, _Mixed) and out.lam == 0.5
    assert calls == [True, True]


@pytest.mark.slow  # a fresh interpreter
def test_training_stack_leaves_cudnn_and_determinism_at_torch_defaults():
    """Importing the whole training stack flips no global switch (a fresh interpreter)."""
    code = ("import torch, pspnet_core.train.engine, pspnet_core.train.cli, "
            "pspnet_core.train.launch;"
            "b = torch.backends.cudnn;"
            "print(b.benchmark, b.deterministic, torch.are_deterministic_algorithms_enabled())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


@pytest.mark.parametrize("device,backend", [(torch.device("cuda", 1), "nccl"),
                                            (torch.device("cpu"), "gloo")])
def test_ddp_backend_is_nccl_on_cuda_and_gloo_on_cpu(monkeypatch, device, backend):
    seen = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(engine.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(engine.dist, "init_process_group",
                        lambda backend: seen.setdefault("backend", backend))
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: seen.setdefault("set_device", d))
    assert engine.setup_distributed(device) is True
    assert seen["backend"] == backend
    assert seen.get("set_device") == (device if device.type == "cuda" else None)
    monkeypatch.setenv("WORLD_SIZE", "1")  # one process: no process group at all
    seen.clear()
    assert engine.setup_distributed(device) is False and seen == {}


class _FakeDDP(nn.Module):
    def __init__(self, module, device_ids=None):
        super().__init__()
        self.module, self.device_ids = module, device_ids


def _frozen_pspnet(frozen_bn: str) -> PSPNet:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a frozen random backbone: fine for this check
        return PSPNet(num_classes=3, freeze_backbone=True, frozen_bn=frozen_bn,
                      output_stride=32, ppm_channels=8)


@pytest.mark.parametrize("frozen_bn", ["train", "eval"])
def test_sync_batchnorm_on_cuda_keeps_params_frozen_layers_and_keys(monkeypatch, frozen_bn):
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", _FakeDDP)
    model = _frozen_pspnet(frozen_bn)
    keys = list(model.state_dict())
    opt = engine.build_optimizer(model, _RunCfgStub())  # built before the conversion (engine)
    trainable = {id(p) for g in opt.param_groups for p in g["params"]}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}

    synced, ddp = engine._distributed(model, Runtime(torch.device("cuda", 1), 1, 2))
    assert isinstance(ddp, _FakeDDP) and ddp.module is synced and ddp.device_ids == [1]
    bns = [m for m in synced.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns and all(isinstance(m, nn.SyncBatchNorm) for m in bns)
    assert list(synced.state_dict()) == keys  # checkpoints load into a single-GPU model
    # the optimizer (built before) still steps the converted model's parameters
    assert {id(p) for p in synced.parameters() if p.requires_grad} == trainable
    assert {n for n, p in synced.named_parameters() if not p.requires_grad} == frozen
    synced.train()
    frozen_bns = [m for m in bns if not m.weight.requires_grad]
    assert frozen_bns and all(m.training is (frozen_bn == "train") for m in frozen_bns)
    assert all(m.training for m in bns if m.weight.requires_grad)

    cpu_model, cpu_ddp = engine._distributed(_frozen_pspnet(frozen_bn),
                                                 Runtime(torch.device("cpu"), 0, 2))
    assert cpu_ddp.device_ids is None  # gloo: no device ids, and no SyncBatchNorm
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in cpu_model.modules())


class _RunCfgStub:
    """What ``engine.build_optimizer`` reads of a RunConfig: the optimizer section."""

    def __init__(self):
        from pspnet_core.config import SGDConfig

        self.optim = SGDConfig()
