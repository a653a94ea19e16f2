"""The CPU kind is decided at run time: the CPU's flags, and oneDNN's ISA cap (ONEDNN_MAX_CPU_ISA), which keeps
torch's matmuls off the bf16 instructions (then bf16 is emulated, and lapidar trains in fp32)."""

from __future__ import annotations

import pytest

from lapidar.training import hardware

FLAGS = "flags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n"


@pytest.mark.parametrize(
    ("cap", "native"),
    [(None, True), ("AVX512_CORE_BF16", True), ("avx512_core_amx", True), ("ALL", True),
     ("AVX512_CORE", False), ("AVX2", False), ("avx512_core_vnni", False)],
)  # fmt: skip
def test_an_isa_cap_below_bf16_means_no_native_bf16(monkeypatch, cap, native):
    monkeypatch.setattr(hardware, "_cpu_flags", lambda: FLAGS)
    if cap is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert hardware.cpu_native_bf16() is native
    kind = hardware.cpu_kind()
    assert kind.startswith("native bf16" if native else "no native bf16")
    if not native:
        assert "ONEDNN_MAX_CPU_ISA" in kind and "AVX512-BF16 present" in kind


def test_a_cpu_without_the_flags_is_not_native_whatever_the_cap(monkeypatch):
    monkeypatch.setattr(hardware, "_cpu_flags", lambda: "flags\t\t: fpu sse avx2\n")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")
    assert hardware.cpu_native_bf16() is False
    assert hardware.cpu_kind() == "no native bf16 (no AVX512-BF16/AMX)"
