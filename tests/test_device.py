"""device: resolving the device, the run's precision as autocast, moving targets."""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import pytest
import torch

from pspnet_core.system.device import autocast, resolve_device, to_device


def test_resolve_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(RuntimeError, match="'cuda' requested but"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")  # under torchrun: this process's GPU
    assert resolve_device("auto") == torch.device("cuda", 3)


def test_autocast_bf16_fp32_and_unknown():
    a = torch.randn(4, 4)
    with autocast(torch.device("cpu"), "bf16"):
        assert (a @ a).dtype == torch.bfloat16
    ctx = autocast(torch.device("cpu"), "fp32")
    assert isinstance(ctx, contextlib.nullcontext)
    with ctx:
        assert (a @ a).dtype == torch.float32
    with pytest.raises(ValueError, match="precision must be 'fp32' or 'bf16', got 'fp16'"):
        autocast(torch.device("cpu"), "fp16")


class Pairish(NamedTuple):
    a: torch.Tensor
    b: torch.Tensor


def test_to_device_keeps_named_tuples_and_other_values():
    t = Pairish(torch.zeros(2), torch.ones(2, dtype=torch.float64))
    moved = to_device(t, torch.device("meta"))
    assert isinstance(moved, Pairish) and moved.a.device.type == "meta"
    assert moved.b.dtype == torch.float64
    assert to_device(torch.zeros(1), torch.device("meta")).device.type == "meta"
    assert to_device(7, torch.device("meta")) == 7
