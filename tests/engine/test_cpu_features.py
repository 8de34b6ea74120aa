"""The dtype the engine picks on CPU follows the instructions the CPU has."""

from __future__ import annotations

from llmfleet.engine.cpu_features import parse_cpuinfo, preferred_cpu_dtype, read_cpu_info

XEON_AMX = """processor\t: 0
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 avx512_vnni amx_bf16 amx_tile amx_int8

processor\t: 1
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 avx512_vnni amx_bf16 amx_tile amx_int8
"""
ZEN4 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: avx2 fma avx512f avx512_bf16 avx512_vnni\n"
OLD_AVX2 = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) CPU E5-2686 v4\nflags\t\t: sse2 avx2 fma\n"


def test_bf16_where_the_cpu_does_it_natively():
    assert preferred_cpu_dtype(parse_cpuinfo(XEON_AMX)) == "bfloat16"
    assert preferred_cpu_dtype(parse_cpuinfo(ZEN4)) == "bfloat16"
    assert preferred_cpu_dtype(parse_cpuinfo(OLD_AVX2)) == "float32"


def test_describe_names_the_model_count_and_the_flags_that_matter():
    info = parse_cpuinfo(XEON_AMX)
    assert info.logical_cpus == 2
    text = info.describe()
    assert text.startswith("Intel(R) Xeon(R) Processor (2 logical CPUs; flags: ")
    assert "amx_bf16" in text and "avx512_bf16" in text and "sse2" not in text
    assert "none of interest" in parse_cpuinfo("processor: 0\nflags: sse2\n").describe()


def test_unreadable_cpuinfo_means_float32(tmp_path):
    info = read_cpu_info(str(tmp_path / "missing"))
    assert info.flags == frozenset() and preferred_cpu_dtype(info) == "float32"
