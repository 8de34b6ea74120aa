"""The memory roofline of batch-1 decode on this CPU: how fast its cores can stream weights at all.

A batch-1 decode step reads every weight once, so its best possible time is the weights' bytes
over the read bandwidth. This measures that bandwidth with the simplest read loop there is (AVX-512
or AVX2 loads summed into independent accumulators, with prefetch, compiled like the engine's CPU
kernels), over a buffer larger than the weights, with 1 and 2 OpenMP threads (best of --reps), and
prints the roofline in tokens/s for the benchmark model's fp32 and bf16 weights next to it.

    python -m benchmarks.roofline [--mib 512] [--reps 15] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import ctypes
import time

SOURCE = r"""
#include <stdint.h>
#include <stddef.h>
#include <omp.h>
#include <immintrin.h>
/* Sum of the buffer's 32-bit words read as floats, so the compiler cannot drop the loads. */
float read_all(const float *p, int64_t n, int threads) {
  float total = 0.f;
#pragma omp parallel for num_threads(threads) reduction(+:total) schedule(static)
  for (int64_t c = 0; c < n / 4096; c++) {
    const float *q = p + c * 4096;
#if defined(__AVX512F__)
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i = 0; i < 4096; i += 64) {
      _mm_prefetch((const char *)(q + i) + 1024, _MM_HINT_T0);
      _mm_prefetch((const char *)(q + i) + 1088, _MM_HINT_T0);
      _mm_prefetch((const char *)(q + i) + 1152, _MM_HINT_T0);
      _mm_prefetch((const char *)(q + i) + 1216, _MM_HINT_T0);
      a0 = _mm512_add_ps(a0, _mm512_loadu_ps(q + i));
      a1 = _mm512_add_ps(a1, _mm512_loadu_ps(q + i + 16));
      a2 = _mm512_add_ps(a2, _mm512_loadu_ps(q + i + 32));
      a3 = _mm512_add_ps(a3, _mm512_loadu_ps(q + i + 48));
    }
    total += _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
#else
    float s[8] = {0};
    for (int64_t i = 0; i < 4096; i += 8)
      for (int j = 0; j < 8; j++) s[j] += q[i + j];
    for (int j = 0; j < 8; j++) total += s[j];
#endif
  }
  return total;
}
"""


def weight_bytes(model_dir) -> dict[str, int]:
    """Bytes a batch-1 step reads in fp32 and bf16: every projection and the LM head (not the embedding,
    of which a step reads one row)."""
    from llmfleet.engine.loader import load_model_config

    c = load_model_config(model_dir)
    per_layer = c.hidden_size * ((c.num_heads + 2 * c.num_kv_heads) * c.head_dim + c.num_heads * c.head_dim
                                 + 3 * c.intermediate_size)
    params = c.num_layers * per_layer + c.vocab_size * c.hidden_size
    return {"float32": 4 * params, "bfloat16": 2 * params}


def main(argv: list[str] | None = None) -> None:
    import torch
    from llmfleet.engine import cpu_kernels

    from benchmarks.bench import CACHE, bench_model, machine_line

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=512, help="buffer size (larger than the weights)")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args(argv)
    print(machine_line(), flush=True)
    lib = ctypes.CDLL(str(cpu_kernels.build(CACHE / "compile" / "kernels", source=SOURCE, name="roofline")))
    lib.read_all.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
    lib.read_all.restype = ctypes.c_float
    buf = torch.ones(args.mib * 2**20 // 4)
    n = buf.numel() // 4096 * 4096
    sizes = weight_bytes(bench_model(1))
    for threads in (int(t) for t in args.threads.split(",")):
        times = []
        for _ in range(args.reps):
            t = time.perf_counter()
            lib.read_all(buf.data_ptr(), n, threads)
            times.append(time.perf_counter() - t)
        times.sort()
        best, median = 4 * n / times[0] / 1e9, 4 * n / times[len(times) // 2] / 1e9
        roof = ", ".join(f"{dt} {best * 1e9 / b:.1f} tok/s ({b / 1e6:.0f} MB a token)" for dt, b in sizes.items())
        print(f"{threads} thread(s): read {best:.1f} GB/s best, {median:.1f} median of {args.reps}; "
              f"batch-1 roofline of the bench model: {roof}", flush=True)
    print(machine_line(), flush=True)


if __name__ == "__main__":
    main()
