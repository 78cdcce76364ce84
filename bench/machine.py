"""What machine a benchmark ran on, and its own matmul peak, so numbers compare across CPUs.

The CPU model changes between machines (with and without AMX the bf16 peak differs ~3.5x), so
absolute seconds do not compare. Every benchmark prints :func:`describe` and, where it counts
FLOPs, the share of :func:`matmul_peak` it reached, both measured in the same process.
"""

from __future__ import annotations

import time

import torch

from pspnet_core.system import precision


def matmul_peak(dtype: torch.dtype = torch.float32, n: int = 2048, seconds: float = 1.0) -> float:
    """GFLOP/s of a square ``n x n`` matmul in ``dtype``, best of repeated calls (~``seconds``)."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def describe() -> str:
    """One line: CPU model, torch's kernel level, how it computes bf16, threads, torch version."""
    kind = precision.cpu_bf16_kind()
    bf16 = f"native bf16: {kind}" if kind else "bf16 emulated"
    return (f"{precision.cpu_model()} ({precision.kernel_level()}, {bf16}), "
            f"{torch.get_num_threads()} threads, torch {torch.__version__}")
