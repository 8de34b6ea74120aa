"""What the CPU can do, read from /proc/cpuinfo, and the dtype the engine picks from it.

The machines a pod lands on vary (an AMD Zen 4 with AVX-512 BF16, an Intel Xeon with AMX,
an older AVX2 part), and the cheapest dtype for the weights follows: with AMX tiles or
AVX-512 BF16 instructions, oneDNN runs bf16 matmuls natively and decode reads half the
bytes of fp32 weights; without them bf16 is emulated and slower than fp32. Every
benchmark prints `describe()` next to its figures, because they mean little without it.
"""

from __future__ import annotations

import pathlib
import platform
from dataclasses import dataclass

# Instructions that make bf16 matrix work native (oneDNN dispatches on them).
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# The flags worth printing next to a figure; the full list is ~100 names.
SHOWN_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
               "amx_int8")


@dataclass(frozen=True)
class CpuInfo:
    model: str
    flags: frozenset[str]
    logical_cpus: int

    @property
    def native_bf16(self) -> bool:
        return any(f in self.flags for f in BF16_FLAGS)

    def describe(self) -> str:
        shown = [f for f in SHOWN_FLAGS if f in self.flags]
        return f"{self.model} ({self.logical_cpus} logical CPUs; flags: {' '.join(shown) or 'none of interest'})"


def parse_cpuinfo(text: str) -> CpuInfo:
    """The first processor's model name and flags, and the processor count."""
    model, flags, count = "", frozenset[str](), 0
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "processor":
            count += 1
        elif key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return CpuInfo(model or platform.processor() or "unknown CPU", flags, count)


def read_cpu_info(path: str = "/proc/cpuinfo") -> CpuInfo:
    try:
        return parse_cpuinfo(pathlib.Path(path).read_text())
    except OSError:  # not Linux: no flags, so the safe fp32 choice
        return CpuInfo(platform.processor() or "unknown CPU", frozenset(), 0)


def preferred_cpu_dtype(info: CpuInfo) -> str:
    """bfloat16 where the CPU does bf16 matrix work natively, else float32."""
    return "bfloat16" if info.native_bf16 else "float32"
