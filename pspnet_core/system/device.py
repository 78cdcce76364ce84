"""Device and precision helpers shared by training (``engine``) and inference (``analysis``).

- :func:`resolve_device`: ``"auto"`` -> cuda if available else cpu; under torchrun ``cuda`` means
  ``cuda:LOCAL_RANK``.
- :func:`autocast`: the run's ``precision`` as a context (bf16 autocast, or nothing for fp32).
- :func:`to_device`: a tensor or a mixed target (a NamedTuple of tensors) onto a device.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch
from torch import Tensor


class DeviceUnavailableError(RuntimeError):
    """The preset or ``--device`` asks for a device this machine does not have."""


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` -> cuda if available else cpu; under torchrun cuda means ``cuda:LOCAL_RANK``."""
    name = str(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                "device 'cuda' requested but torch.cuda.is_available() is False (no CUDA GPU "
                "or driver here); use --device cpu, --device auto or --set device=cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(name)


def autocast(device: torch.device, precision: str):
    """bf16 autocast on cpu or cuda; fp32 is a no-op context."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision == "fp32":
        return contextlib.nullcontext()
    raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")


def to_device(target: Any, device: torch.device) -> Any:
    """Tensor or MixedTarget (a NamedTuple of tensors) -> device."""
    if isinstance(target, Tensor):
        return target.to(device, non_blocking=True)
    if isinstance(target, tuple):
        return type(target)(*(to_device(t, device) for t in target))
    return target
