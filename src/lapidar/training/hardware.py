"""The machines `lapidar estimate` knows: a table of common GPUs, this machine's CPU and RAM, memory sizes.

GPU numbers are the vendors' published dense (no sparsity) peaks; memory is what the driver reports as total
(`nvidia-smi`), in GiB. The CPU's throughput is measured, not looked up: a short matmul probe.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lapidar.errors import UserError

__all__ = [
    "GPUS",
    "Device",
    "bf16_rule",
    "cpu_device",
    "cpu_kind",
    "cpu_native_bf16",
    "find_gpu",
    "fp16_rule",
    "matmul_gflops",
    "native_bf16",
    "onednn_isa_cap",
    "parse_memory",
    "peak_rss_mib",
    "quant_compute_dtype",
    "release_mapped_pages",
    "return_freed_blocks",
    "this_machine",
    "use_bf16",
    "use_fp16",
]

GiB = 2**30


@dataclass(frozen=True)
class Device:
    """A device training runs on: its memory, peak throughput and whether it runs bf16."""

    name: str
    memory: float  # bytes usable by one process (RAM available, or the GPU's total)
    bf16_tflops: float | None  # dense bf16 peak; None: no bf16 (lapidar then trains in fp16 on a GPU, fp32 on CPU)
    fp32_tflops: float
    kind: str = "cuda"  # "cuda" or "cpu"
    note: str = ""
    fp16_tflops: float | None = None  # dense fp16 tensor-core peak, where it matters (GPUs without bf16)

    @property
    def bf16(self) -> bool:
        """Whether lapidar trains under bf16 autocast on this device (`precision: auto`)."""
        return self.bf16_tflops is not None

    def peak_tflops(self, bf16: bool, fp16: bool = False) -> float:
        """Peak matmul TFLOP/s in the precision training uses."""
        if fp16 and self.fp16_tflops:
            return self.fp16_tflops
        return self.bf16_tflops if bf16 and self.bf16_tflops else self.fp32_tflops


def _gpu(name: str, gib: float, bf16: float | None, fp32: float, note: str = "", fp16: float | None = None) -> Device:
    return Device(name, gib * GiB, bf16, fp32, "cuda", note, fp16)


# name -> device; aliases are matched case-insensitively, ignoring spaces, dashes and "nvidia"/"geforce".
GPUS: dict[str, Device] = {
    d.name: d
    for d in (
        _gpu("T4", 15.0, None, 8.1, "Turing: no bf16; lapidar trains in fp16 with loss scaling there", 65.0),
        _gpu("V100 16GB", 16.0, None, 15.7, "Volta: no bf16; lapidar trains in fp16 with loss scaling there", 125.0),
        _gpu("V100 32GB", 32.0, None, 15.7, "Volta: no bf16; lapidar trains in fp16 with loss scaling there", 125.0),
        _gpu("RTX 3060", 12.0, 25.6, 12.7),
        _gpu("RTX 3090", 24.0, 71.0, 35.6),
        _gpu("RTX 4070 Ti Super", 16.0, 88.2, 44.1),
        _gpu("RTX 4080", 16.0, 97.5, 48.7),
        _gpu("RTX 4090", 24.0, 165.2, 82.6),
        _gpu("RTX 5090", 32.0, 209.5, 104.8),
        _gpu("RTX A6000", 48.0, 154.8, 38.7),
        _gpu("L4", 22.5, 121.0, 30.3),
        _gpu("A10", 22.5, 125.0, 31.2),
        _gpu("A10G", 22.5, 70.0, 31.2, "AWS g5"),
        _gpu("L40S", 45.0, 362.0, 91.6),
        _gpu("A100 40GB", 40.0, 312.0, 19.5),
        _gpu("A100 80GB", 80.0, 312.0, 19.5),
        _gpu("H100 80GB", 79.6, 989.0, 67.0, "SXM; the PCIe card peaks at 756 TFLOP/s bf16"),
        _gpu("H100 PCIe", 79.6, 756.0, 51.0),
        _gpu("H200", 140.0, 989.0, 67.0),
        _gpu("B200", 179.0, 2250.0, 80.0),
        _gpu("MI300X", 191.0, 1307.0, 163.4, "AMD (ROCm builds of PyTorch use the cuda device name)"),
    )
}
_ALIASES = {
    "A100": "A100 80GB",
    "H100": "H100 80GB",
    "V100": "V100 32GB",
    "A6000": "RTX A6000",
    "H100 SXM": "H100 80GB",
}


def _key(name: str) -> str:
    name = re.sub(r"(?i)\b(nvidia|geforce|tesla)\b", "", name)
    return re.sub(r"[\s_-]+", "", name).lower()


def find_gpu(name: str) -> Device:
    """Look a GPU up by name (`RTX 4090`, `rtx4090`, `A100-80GB`, `h100`); unknown names list the known ones."""
    wanted = _key(name)
    for alias, target in _ALIASES.items():
        if _key(alias) == wanted:
            return GPUS[target]
    for key, device in GPUS.items():
        if _key(key) == wanted or _key(key).replace("gb", "") == wanted.replace("gb", ""):
            return device
    raise UserError(
        f"unknown device {name!r}; known: {', '.join(GPUS)} (or give the memory directly with --memory 24GB)"
    )


def parse_memory(text: str) -> float:
    """`24GB`, `24 GiB`, `80g`, `16000MB` -> bytes. GB and GiB both mean 2**30 here, as GPU sizes are quoted."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b?)\s*", text.lower())
    if not m:
        raise UserError(f"cannot read memory size {text!r}; write it like 24GB, 80GiB or 16000MB")
    scale = {"": GiB, "k": 2**10, "m": 2**20, "g": GiB, "t": 2**40}[m.group(2)]
    return float(m.group(1)) * scale


def _meminfo() -> dict[str, int]:
    out: dict[str, int] = {}
    path = Path("/proc/meminfo")
    if path.is_file():
        for line in path.read_text().splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                out[key] = int(parts[0]) * 1024
    return out


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB: its own address space's high-water mark.

    Not `ru_maxrss` alone: Linux carries it over `execve`, so a process that subprocess started (vfork + exec) from
    a big parent (the web app, a test runner) would report the parent's peak. /proc/self/status's VmHWM belongs to
    the process's own address space; elsewhere ru_maxrss is all there is (bytes on macOS, KiB on other systems).
    """
    import resource
    import sys

    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 2**20 if sys.platform == "darwin" else peak / 1024, 1)


def _cpu_flags() -> str:
    path = Path("/proc/cpuinfo")
    return path.read_text() if path.is_file() else ""


# oneDNN's ISA caps (ONEDNN_MAX_CPU_ISA) under which its bf16 kernels still use bf16 instructions.
_BF16_ISAS = {"AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16", "ALL", "DEFAULT"}


def onednn_isa_cap() -> str | None:
    """The ISA oneDNN (torch's CPU matmuls) is capped at by ONEDNN_MAX_CPU_ISA, upper-case; None when unset."""
    value = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    return value or None


def cpu_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow.

    ONEDNN_MAX_CPU_ISA below AVX512_CORE_BF16 (e.g. AVX512_CORE, AVX2) keeps oneDNN off those instructions, and
    bf16 is then emulated (measured on an AVX512-BF16 EPYC: 174 GFLOP/s at AVX512_CORE, 1.3 at AVX2, against
    ~220 fp32), so it counts as no native bf16. It is also how to run the other CPU kind's path on this one."""
    flags = _cpu_flags()
    cap = onednn_isa_cap()
    if cap is not None and cap not in _BF16_ISAS:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_kind() -> str:
    """The CPU kind in words, for reports: native bf16 or not, and why."""
    flags = _cpu_flags()
    has = "AMX" if "amx_bf16" in flags else ("AVX512-BF16" if "avx512_bf16" in flags else None)
    cap = onednn_isa_cap()
    if has and not cpu_native_bf16():
        return f"no native bf16 ({has} present, oneDNN capped at {cap} by ONEDNN_MAX_CPU_ISA)"
    return f"native bf16 ({has})" if has else "no native bf16 (no AVX512-BF16/AMX)"


def cpu_has_amx() -> bool:
    """Whether this CPU has Intel AMX (Sapphire Rapids and later), which llama.cpp uses for repacked weights."""
    return "amx_int8" in _cpu_flags()


def native_bf16() -> bool:
    """Whether the device a run here uses computes bf16 natively (a CUDA GPU with bf16, or a CPU with
    AVX512-BF16/AMX)."""
    import torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    return cpu_native_bf16()


def bf16_rule(precision: str, n_params: int, on_gpu: bool, native: bool) -> bool:
    """The one bf16 rule: whether a run trains under bf16 autocast, on a device described by `on_gpu`/`native`.

    `precision` is the config's `auto|fp32|bf16`. `auto` uses bf16 on a GPU that supports it, and on CPU only when
    the CPU computes bf16 natively and the model is big enough (>= 100M parameters) for its matmuls to dominate:
    emulated bf16 is several times slower than fp32, and on small models the conversions cost more than they save.
    `lapidar estimate` asks it about other devices; training asks `use_bf16` about this one.
    """
    if precision != "auto":
        return precision == "bf16"
    return native and (on_gpu or n_params >= 100_000_000)


def use_bf16(precision: str, n_params: int) -> bool:
    """`bf16_rule` for the device a run here uses (the first CUDA GPU, else this CPU)."""
    import torch

    on_gpu = torch.cuda.is_available()
    return bf16_rule(precision, n_params, on_gpu, native_bf16())


def fp16_rule(precision: str, on_gpu: bool, native: bool) -> bool:
    """Whether a run trains under fp16 autocast with loss scaling, on a device described by `on_gpu`/`native`.

    `auto` picks fp16 on a CUDA GPU without bf16 (T4, V100: the free notebook GPUs), where fp32 would leave the
    tensor cores idle; elsewhere fp16 only when `precision` asks for it (`bf16_rule` decides first).
    """
    if precision != "auto":
        return precision == "fp16"
    return on_gpu and not native


def use_fp16(precision: str) -> bool:
    """`fp16_rule` for the device a run here uses (the first CUDA GPU, else this CPU)."""
    import torch

    on_gpu = torch.cuda.is_available()
    return fp16_rule(precision, on_gpu, native_bf16())


def quant_compute_dtype(precision: str) -> Any:
    """Compute dtype of a 4-bit base: bf16 where asked for or `auto` on a GPU with bf16, fp16 where the run trains in
    fp16 (`fp16_rule`), fp32 otherwise (CPU)."""
    import torch

    if precision == "bf16" or (precision == "auto" and torch.cuda.is_available() and native_bf16()):
        return torch.bfloat16
    return torch.float16 if use_fp16(precision) else torch.float32


def matmul_gflops(bf16: bool, n: int = 2048, seconds: float = 0.5, device: str = "cpu") -> float:
    """Best GFLOP/s of an `n x n` matmul within `seconds` (bf16 or fp32) on `device` (CPU: in this process's
    threads)."""
    import torch

    dtype = torch.bfloat16 if bf16 else torch.float32
    a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
    torch.matmul(a, b)  # warm-up
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        torch.matmul(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * n**3 / max(time.perf_counter() - t, 1e-9) / 1e9)
    return best


def cpu_device(probe: bool = True, extra_available: float = 0.0) -> Device:
    """This machine's CPU: RAM available now (+ `extra_available`, e.g. the caller's own RSS) and measured
    matmul throughput (skipped with probe=False)."""
    info = _meminfo()
    available = info.get("MemAvailable", info.get("MemTotal", 0)) + extra_available
    has_bf16 = cpu_native_bf16()
    fp32 = matmul_gflops(False) / 1000 if probe else 0.0
    bf16 = (matmul_gflops(True) / 1000 if probe else 0.0) if has_bf16 else None
    total = info.get("MemTotal", 0) / GiB
    note = f"{total:.1f} GiB RAM, {available / GiB:.1f} GiB available now"
    if not has_bf16:
        note += "; no AVX512-BF16/AMX: lapidar trains in fp32 here"
    return Device("this machine (CPU)", available, bf16, fp32, "cpu", note)


def this_machine(probe: bool = True, extra_available: float = 0.0) -> Device:
    """The device a run here would use: the first CUDA GPU if there is one, else the CPU."""
    try:
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            for device in GPUS.values():
                if _key(device.name.split()[0]) in _key(props.name):
                    return dataclasses.replace(device, name=props.name, memory=props.total_memory)
            bf16 = torch.cuda.is_bf16_supported()
            return Device(props.name, props.total_memory, 100.0 if bf16 else None, 20.0, note="not in the table")
    except ImportError:
        pass
    return cpu_device(probe, extra_available)


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)


def return_freed_blocks(threshold: int = 1 << 20) -> bool:
    """Make glibc serve blocks of `threshold` bytes and more with mmap, so that freed tensors leave the process.

    glibc raises its mmap threshold each time a mapped block is freed (up to 32 MiB): after the first training step
    every activation-sized tensor comes from the heap, and the heap keeps the pages of freed temporaries — on CPU
    the resident set grew by about as much again as the activations themselves (0.5B LoRA, batch 4 x 512: 13.5 GiB
    instead of 9.8 GiB).
    A fixed threshold turns that dynamic rule off. Costs a page fault per fresh page of each large tensor. Returns
    False where there is no glibc (macOS, musl), and changes nothing there.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version"):
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))


MADV_DONTNEED = 4  # Linux's madvise advice (asm-generic/mman-common.h)


def release_mapped_pages(dropped: list, live: list, suffixes: tuple[str, ...] = (".safetensors",)) -> int:
    """Unmap the resident pages of `dropped` tensors that are views of a mapped weight file; return the bytes
    released.

    transformers 5 leaves loaded weights as views of the mmapped checkpoint, and a page read once stays in the
    resident set until the whole file is unmapped: casting an fp32 0.5B checkpoint's linear weights to bf16 kept all
    1.9 GB of file pages resident beside the new copies (peak 3.4 GiB before the first step, 1.6 GiB after).
    Call this once the values of `dropped` have been copied elsewhere. MADV_DONTNEED on a file mapping only drops
    the pages: an unmodified page is read back from the file if anything touches it again. Only whole pages inside
    a dropped tensor, inside a mapping of a file named `*{suffix}`, and outside every tensor in `live` (the ones
    still in use, e.g. the model's parameters and buffers) are released, so no value still in use can change.
    Linux only (reads /proc/self/maps); returns 0 and changes nothing elsewhere.
    """
    import ctypes
    import ctypes.util
    import mmap

    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return 0
    files = []
    for line in maps:
        fields = line.split(maxsplit=5)  # start-end perms offset dev inode [path]
        if len(fields) == 6 and fields[5].strip().endswith(suffixes):
            files.append(tuple(int(x, 16) for x in fields[0].split("-")))
    name = ctypes.util.find_library("c")
    if not files or name is None:
        return 0
    libc = ctypes.CDLL(name, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]

    def span(t) -> tuple[int, int]:  # the bytes a (possibly strided) view reads
        last = sum((n - 1) * abs(st) for n, st in zip(t.shape, t.stride(), strict=True))
        return t.data_ptr(), t.data_ptr() + (last + 1) * t.element_size()

    busy = sorted(span(t) for t in live if t.device.type == "cpu" and t.numel())
    page, released = mmap.PAGESIZE, 0
    for t in dropped:
        if t.device.type != "cpu" or not t.numel():
            continue
        start, end = span(t)
        if not t.is_contiguous() or not any(a <= start and end <= b for a, b in files):
            continue
        cuts = [(start, end)]
        for a, b in busy:  # remove every live span from [start, end)
            cuts = [piece for lo, hi in cuts for piece in ((lo, min(hi, a)), (max(lo, b), hi)) if piece[0] < piece[1]]
        for lo, hi in cuts:
            lo, hi = -(-lo // page) * page, hi // page * page  # whole pages only
            if lo < hi and libc.madvise(lo, hi - lo, MADV_DONTNEED) == 0:
                released += hi - lo
    return released
