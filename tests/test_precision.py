"""precision: ``auto`` resolves to bf16 only where the device computes it natively, the resolved
precision is what a run hashes, and an explicit bf16 on an emulating CPU warns once."""

from __future__ import annotations

import pytest
from tiny_preset import write_tiny

from pspnet_core import config
from pspnet_core.store import provenance
from pspnet_core.system import precision
from pspnet_core.system.precision import cpu_bf16_kind, decide, kernel_level, resolve_precision

AVX2 = frozenset({"sse4_2", "avx", "avx2", "fma"})
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"}
AVX512_BF16 = AVX512 | {"avx512_bf16"}
AMX = AVX512_BF16 | {"amx_tile", "amx_bf16", "amx_int8"}


@pytest.mark.parametrize(("flags", "env", "level", "kind"), [
    (AVX2, {}, "AVX2", None),                       # most laptops: bf16 emulated
    (AVX512, {}, "AVX512", None),                   # AVX-512 without BF16 (Skylake-Ice Lake)
    (AVX512_BF16, {}, "AVX512", "AVX-512 BF16"),    # AMD EPYC Zen 4
    (AMX, {}, "AVX512", "AMX"),                     # Intel Sapphire Rapids and later
    (AMX, {"ATEN_CPU_CAPABILITY": "avx2"}, "AVX2", None),             # torch capped
    (AMX, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, "AVX512", None),            # oneDNN capped
    (AMX, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, "AVX512", "AMX"),
    (AVX512_BF16, {"ATEN_CPU_CAPABILITY": "default"}, "DEFAULT", None),
    (frozenset(), {}, "DEFAULT", None),             # no /proc/cpuinfo (not Linux)
])
def test_cpu_kind_from_flags_and_caps(flags, env, level, kind):
    assert kernel_level(flags, env) == level
    assert cpu_bf16_kind(flags, env) == kind


@pytest.mark.parametrize(("requested", "device", "facts", "expected"), [
    ("auto", "cuda", {"cuda_bf16": True}, ("bf16", "this GPU computes bf16 natively")),
    ("auto", "cuda", {"cuda_bf16": False}, ("fp32", "this GPU has no native bf16")),
    ("auto", "cpu", {"cpu_bf16": "AMX"}, ("bf16", "this CPU computes bf16 natively (AMX)")),
    ("auto", "cpu", {"cpu_bf16": "AVX-512 BF16"},
     ("bf16", "this CPU computes bf16 natively (AVX-512 BF16)")),
    ("auto", "cpu", {"cpu_level": "AVX2"}, ("fp32", "this CPU has no native bf16 (AVX2 only)")),
    ("fp32", "cuda", {"cuda_bf16": True}, ("fp32", "set in the preset")),
    ("bf16", "cpu", {"cpu_level": "AVX2"}, ("bf16", "set in the preset")),
])
def test_decide_each_device_and_cpu_case(requested, device, facts, expected):
    assert tuple(decide(requested, device, **facts)) == expected


def test_decide_refuses_other_precisions():
    with pytest.raises(ValueError, match="precision must be one of 'auto', 'fp32', 'bf16'"):
        decide("fp16", "cpu")


def use_cpu(monkeypatch, flags: frozenset[str]) -> None:
    """This process sees a CPU with ``flags`` and no GPU driver."""
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    monkeypatch.setattr(precision, "_cuda_driver_present", lambda: False)
    for var in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA"):
        monkeypatch.delenv(var, raising=False)


def test_resolve_on_this_machine_kinds(monkeypatch):
    use_cpu(monkeypatch, AMX)
    assert resolve_precision("auto").name == "bf16"
    assert (resolve_precision("auto", "cpu").describe()
            == "bf16: this CPU computes bf16 natively (AMX)")
    use_cpu(monkeypatch, AVX2)
    assert resolve_precision("auto").describe() == "fp32: this CPU has no native bf16 (AVX2 only)"
    # a preset naming cuda on a machine without a GPU (reading runs trained on one)
    assert resolve_precision("auto", "cuda").name == "bf16"


def test_resolved_precision_is_what_the_run_hashes(monkeypatch, tmp_path):
    params = write_tiny(tmp_path, precision="auto")

    def run_of(flags, **over):
        use_cpu(monkeypatch, flags)
        return config.resolve_run(config.load_params(params, over), "sgd_mix")

    on_amx, on_avx2 = run_of(AMX), run_of(AVX2)
    assert (on_amx.precision, on_avx2.precision) == ("bf16", "fp32")
    assert config.run_hash(on_amx) != config.run_hash(on_avx2)  # never one folder for both
    # auto resolving to a precision is the same run as asking for it
    assert config.run_hash(on_amx) == config.run_hash(run_of(AVX2, precision="bf16"))
    assert config.run_hash(on_avx2) == config.run_hash(run_of(AMX, precision="fp32"))
    # the preset itself keeps what was asked; the figures record what ran
    cfg = config.load_params(params)
    assert cfg.precision == "auto"
    use_cpu(monkeypatch, AMX)
    assert provenance.figure_record(cfg)["precision"] == "bf16"
    use_cpu(monkeypatch, AVX2)
    assert provenance.figure_record(cfg)["precision"] == "fp32"
    assert provenance.machine()["kernels"] == "AVX2"


def test_explicit_bf16_on_an_emulating_cpu_warns_once(monkeypatch, capsys):
    monkeypatch.setattr(precision, "_warned", [])
    use_cpu(monkeypatch, AVX2)
    assert precision.warn_if_emulated("bf16", "cpu")
    assert not precision.warn_if_emulated("bf16", "cpu")  # once per process
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "precision: auto" in err[0] and "AVX2" in err[0]


@pytest.mark.parametrize(("prec", "device", "flags"), [
    ("fp32", "cpu", AVX2), ("bf16", "cuda", AVX2), ("bf16", "cpu", AMX),
    ("bf16", "cpu", AVX512_BF16),
])
def test_no_warning_where_bf16_is_native_or_not_asked(monkeypatch, capsys, prec, device, flags):
    monkeypatch.setattr(precision, "_warned", [])
    use_cpu(monkeypatch, flags)
    assert not precision.warn_if_emulated(prec, device)
    assert capsys.readouterr().err == ""
