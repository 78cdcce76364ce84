"""Which precision a run computes in: a preset's ``precision`` (``auto``, ``fp32``, ``bf16``) on
this machine, and why.

``auto`` (every preset's default) is bf16 only where the device computes bf16 natively: a CUDA GPU
with bf16, or a CPU with AMX tiles or AVX-512 BF16. Everywhere else it is fp32, since torch then
emulates bf16 (the stride-8 smoke step took 25 s in bf16 vs 1.5 s in fp32 on an AVX2-only CPU;
1.3x slower than fp32 on an AVX-512 CPU without BF16). The
*resolved* precision is what a run hashes and records (``config.resolve_run``), so a bf16 run and
an fp32 run never share a run folder.

No torch at import (the study CLI decides without loading the training stack): the CPU's kind
comes from ``/proc/cpuinfo`` and the kernel caps ``ATEN_CPU_CAPABILITY`` / ``ONEDNN_MAX_CPU_ISA``;
torch is imported only to ask a CUDA driver that is present.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

PRECISIONS = ("auto", "fp32", "bf16")

# oneDNN's ISA caps (ONEDNN_MAX_CPU_ISA) that still allow its native bf16 kernels
_ONEDNN_BF16_CAPS = frozenset({
    "ALL", "DEFAULT", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX",
    "AVX512_CORE_AMX_FP16", "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16",
    "AVX10_2_512", "AVX10_2_512_AMX_2",
})


class Precision(NamedTuple):
    """The precision a run computes in (``fp32`` or ``bf16``) and why, in words."""

    name: str
    reason: str

    def describe(self) -> str:
        """``"fp32: this CPU has no native bf16 (AVX2)"``: what the CLIs print."""
        return f"{self.name}: {self.reason}"


def _cpuinfo(field: str) -> str:
    """The first ``field`` line of /proc/cpuinfo, after its colon ("" where there is none)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The ``flags`` of /proc/cpuinfo (empty where there is none)."""
    return frozenset(_cpuinfo("flags").split())


def cpu_model() -> str:
    """The CPU's ``model name`` (/proc/cpuinfo), else what the platform says."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def kernel_level(flags: frozenset[str] | None = None,
                 env: Mapping[str, str] | None = None) -> str:
    """The vector level torch's CPU kernels use: ``AVX512``, ``AVX2`` or ``DEFAULT``, after the
    cap ``ATEN_CPU_CAPABILITY`` (as ``torch.backends.cpu.get_cpu_capability()`` reports it)."""
    flags = cpu_flags() if flags is None else flags
    env = os.environ if env is None else env
    cap = env.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    order = ["DEFAULT", "AVX2", "AVX512"]
    have = ("AVX512" if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags
            else "AVX2" if {"avx2", "fma"} <= flags else "DEFAULT")
    capped = {"avx512": "AVX512", "avx2": "AVX2", "default": "DEFAULT"}.get(cap, "AVX512")
    return order[min(order.index(have), order.index(capped))]


def cpu_bf16_kind(flags: frozenset[str] | None = None,
                  env: Mapping[str, str] | None = None) -> str | None:
    """How this CPU computes bf16 natively: ``"AMX"``, ``"AVX-512 BF16"``, or None (emulated).
    A cap on torch's kernels below AVX-512 or on oneDNN's below AVX512_CORE_BF16 counts as none:
    the bf16 convolutions then run emulated."""
    flags = cpu_flags() if flags is None else flags
    env = os.environ if env is None else env
    if kernel_level(flags, env) != "AVX512":
        return None
    if (env.get("ONEDNN_MAX_CPU_ISA", "").strip().upper() or "ALL") not in _ONEDNN_BF16_CAPS:
        return None
    if "amx_tile" in flags and "amx_bf16" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX-512 BF16"
    return None


def decide(requested: str, device_type: str, *, cuda_bf16: bool = False,
           cpu_bf16: str | None = None, cpu_level: str = "") -> Precision:
    """:func:`resolve_precision` from the facts, without looking at the machine."""
    if requested in ("fp32", "bf16"):
        return Precision(requested, "set in the preset")
    if requested != "auto":
        raise ValueError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}, "
                         f"got {requested!r}")
    if device_type == "cuda":
        return (Precision("bf16", "this GPU computes bf16 natively") if cuda_bf16
                else Precision("fp32", "this GPU has no native bf16"))
    if cpu_bf16:
        return Precision("bf16", f"this CPU computes bf16 natively ({cpu_bf16})")
    level = f" ({cpu_level} only)" if cpu_level else ""
    return Precision("fp32", f"this CPU has no native bf16{level}")


def _cuda_driver_present() -> bool:
    """Whether an NVIDIA driver is loaded (checked before importing torch to ask it)."""
    return Path("/proc/driver/nvidia").exists() or Path("/dev/nvidiactl").exists()


def _cuda_available() -> bool:
    if not _cuda_driver_present():
        return False
    import torch

    return torch.cuda.is_available()


def resolve_precision(requested: str, device: object = "auto") -> Precision:
    """A preset's ``precision`` on ``device`` (``auto``, ``cpu``, ``cuda[:N]`` or a torch.device)
    of this machine. A preset that names cuda on a machine without a GPU (reading runs trained
    elsewhere) resolves as a bf16 GPU: every GPU the paper preset targets (Ampere or newer) has
    bf16; set ``precision`` explicitly to read runs trained otherwise."""
    if requested in ("fp32", "bf16"):
        return decide(requested, "cpu")
    name = str(device)
    if name == "auto":
        name = "cuda" if _cuda_available() else "cpu"
    if name.startswith("cuda"):
        bf16 = True
        if _cuda_available():
            import torch

            bf16 = bool(torch.cuda.is_bf16_supported())
        return decide(requested, "cuda", cuda_bf16=bf16)
    return decide(requested, "cpu", cpu_bf16=cpu_bf16_kind(), cpu_level=kernel_level())


_warned: list[bool] = []


def warn_if_emulated(precision: str, device_type: str) -> bool:
    """One warning line on stderr, once per process, when ``precision`` is bf16 on a CPU without
    native bf16; returns whether it warned."""
    if precision != "bf16" or device_type != "cpu" or _warned or cpu_bf16_kind():
        return False
    _warned.append(True)
    print(f"warning: precision bf16 on a CPU without native bf16 ({kernel_level()} only): torch "
          "emulates it, slower than fp32 (up to ~17x on AVX2-only CPUs); use precision: auto "
          "(the presets' default), which trains in fp32 on this CPU", file=sys.stderr,
          flush=True)
    return True
