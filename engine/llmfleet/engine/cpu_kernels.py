"""C kernels for one token on CPU: a matrix-vector product, and a whole decoder layer around it.

A batch-1 decode step is a chain of matrix-vector products whose cost is reading the weights
once, plus some thirty small ops per layer that cost more in dispatch than in arithmetic. These
kernels stream four weight rows at a time from the plain [out, in] layout (software prefetch
ahead of each row, fp32 accumulation, bf16 pairs through `vdpbf16ps` where the CPU has
AVX-512 BF16, rows split over torch's OpenMP threads) and do a layer's norms, rotary, paged
attention, SiLU and residual adds in the same call (one_token.py drives them).

The C source is compiled at load time for the CPU it runs on (`-march=native`: AVX-512, AVX2
or portable C, whichever the CPU has) into the compile cache directory, keyed by the source,
the compiler, its flags and the CPU; later starts and replicas on the same volume load it in
milliseconds. Without a C compiler the failure is logged and the engine runs as without them.
ctypes releases the GIL during a call; a call costs a few microseconds.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import pathlib
import shutil
import subprocess
import tempfile

import torch

from .cpu_features import read_cpu_info

log = logging.getLogger("llmfleet.engine")

SOURCE = r"""
#include <stdint.h>
#include <string.h>
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

#define PREFETCH_BYTES 256  /* measured: 256 ahead of each of the four row streams beat 512-2048 */

static inline float bf2f(uint16_t h) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }
static inline uint16_t f2bf(float f) {  /* round to nearest even, as torch does; NaN stays NaN */
  uint32_t u; memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1);
  return (uint16_t)(u >> 16);
}

static inline float ld_f32(const float *p) { return *p; }
static inline float ld_b16(const uint16_t *p) { return bf2f(*p); }

#if defined(__AVX512F__)
#define VW 16
typedef __m512 vec;
static inline vec vzero(void) { return _mm512_setzero_ps(); }
static inline vec vfma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
static inline float vsum(vec a) { return _mm512_reduce_add_ps(a); }
static inline vec vld_f32(const float *p) { return _mm512_loadu_ps(p); }
static inline vec vld_b16(const uint16_t *p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}
#elif defined(__AVX2__) && defined(__FMA__)
#define VW 8
typedef __m256 vec;
static inline vec vzero(void) { return _mm256_setzero_ps(); }
static inline vec vfma(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
static inline float vsum(vec a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
static inline vec vld_f32(const float *p) { return _mm256_loadu_ps(p); }
static inline vec vld_b16(const uint16_t *p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}
#endif

/* Four rows' dot products with x: out[r] = sum_i w[r*n + i] * x[i], fp32 accumulation. */
#define DOT4(T, LD)                                                                                   \
static void dot4_##T(const T *w, const T *x, int64_t n, float *out) {                                 \
  const T *w0 = w, *w1 = w + n, *w2 = w + 2 * n, *w3 = w + 3 * n;                                     \
  int64_t i = 0;                                                                                      \
  float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;                                                       \
  VECTOR_BODY(T)                                                                                      \
  for (; i < n; i++) {                                                                                \
    float xi = LD(x + i);                                                                             \
    s0 += LD(w0 + i) * xi; s1 += LD(w1 + i) * xi; s2 += LD(w2 + i) * xi; s3 += LD(w3 + i) * xi;       \
  }                                                                                                   \
  out[0] = s0; out[1] = s1; out[2] = s2; out[3] = s3;                                                 \
}                                                                                                     \
static float dot1_##T(const T *w, const T *x, int64_t n) {                                            \
  float s = 0.f;                                                                                      \
  for (int64_t i = 0; i < n; i++) s += LD(w + i) * LD(x + i);                                         \
  return s;                                                                                           \
}

#ifdef VW
#define PF(p) _mm_prefetch((const char *)(p) + PREFETCH_BYTES, _MM_HINT_T0)
#define VECTOR_BODY(T)                                                                                \
  {                                                                                                   \
    vec a0 = vzero(), a1 = vzero(), a2 = vzero(), a3 = vzero();                                       \
    for (; i + VW <= n; i += VW) {                                                                    \
      PF(w0 + i); PF(w1 + i); PF(w2 + i); PF(w3 + i);                                                 \
      vec xv = vld_##T(x + i);                                                                        \
      a0 = vfma(vld_##T(w0 + i), xv, a0);                                                             \
      a1 = vfma(vld_##T(w1 + i), xv, a1);                                                             \
      a2 = vfma(vld_##T(w2 + i), xv, a2);                                                             \
      a3 = vfma(vld_##T(w3 + i), xv, a3);                                                             \
    }                                                                                                 \
    s0 = vsum(a0); s1 = vsum(a1); s2 = vsum(a2); s3 = vsum(a3);                                       \
  }
#define vld_float vld_f32
#define vld_uint16_t vld_b16
#else
#define VECTOR_BODY(T)
#endif

DOT4(float, ld_f32)
#if defined(__AVX512BF16__)
/* bf16 pairs straight into fp32 sums (vdpbf16ps): half the instructions of widening each weight first */
#undef VECTOR_BODY
#define VECTOR_BODY(T)                                                                                \
  {                                                                                                   \
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                                       \
    for (; i + 32 <= n; i += 32) {                                                                    \
      PF(w0 + i); PF(w1 + i); PF(w2 + i); PF(w3 + i);                                                 \
      __m512bh xv = (__m512bh)_mm512_loadu_si512(x + i);                                              \
      a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512(w0 + i), xv);                            \
      a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_loadu_si512(w1 + i), xv);                            \
      a2 = _mm512_dpbf16_ps(a2, (__m512bh)_mm512_loadu_si512(w2 + i), xv);                            \
      a3 = _mm512_dpbf16_ps(a3, (__m512bh)_mm512_loadu_si512(w3 + i), xv);                            \
    }                                                                                                 \
    s0 = vsum(a0); s1 = vsum(a1); s2 = vsum(a2); s3 = vsum(a3);                                       \
  }
#endif
DOT4(uint16_t, ld_b16)

#include <math.h>
#include <stdlib.h>

/* Element access for the two weight dtypes: load as float, store rounded to the dtype. */
static inline float LD_float(const float *p) { return *p; }
static inline void ST_float(float *p, float v) { *p = v; }
static inline float RND_float(float v) { return v; }
static inline float LD_uint16_t(const uint16_t *p) { return bf2f(*p); }
static inline void ST_uint16_t(uint16_t *p, float v) { *p = f2bf(v); }
static inline float RND_uint16_t(float v) { return bf2f(f2bf(v)); }

/* y[r] = sum_i w[r, i] x[i] (+ b[r]), rounded to T; rows split over OpenMP threads in blocks of four. */
#define GEMV(T)                                                                                       \
static void gemv_##T(const T *w, const T *x, const T *b, T *y, int64_t rows, int64_t n, int threads) {\
  int64_t blocks = rows / 4;                                                                          \
  _Pragma("omp parallel for schedule(static) num_threads(threads) if (rows * n >= 262144)")           \
  for (int64_t k = 0; k < blocks; k++) {                                                              \
    float s[4];                                                                                       \
    dot4_##T(w + 4 * k * n, x, n, s);                                                                 \
    for (int j = 0; j < 4; j++) ST_##T(y + 4 * k + j, b ? s[j] + LD_##T(b + 4 * k + j) : s[j]);      \
  }                                                                                                   \
  for (int64_t r = 4 * blocks; r < rows; r++) {                                                       \
    float s = dot1_##T(w + r * n, x, n);                                                              \
    ST_##T(y + r, b ? s + LD_##T(b + r) : s);                                                         \
  }                                                                                                   \
}
GEMV(float)
GEMV(uint16_t)

/* `threads` is passed, not taken from OpenMP's per-thread default: a Python thread that has not run a
   torch op yet would otherwise use every core whatever torch.set_num_threads said. */
void onerow_f32(const float *w, const float *x, const float *b, float *y, int64_t rows, int64_t n, int threads) {
  gemv_float(w, x, b, y, rows, n, threads);
}
void onerow_bf16(const uint16_t *w, const uint16_t *x, const uint16_t *b, uint16_t *y, int64_t rows, int64_t n,
                 int threads) {
  gemv_uint16_t(w, x, b, y, rows, n, threads);
}

/* Llama RMSNorm as Hugging Face rounds it: normalise in fp32, round to T, then scale by the weight in T. */
#define RMSNORM(T)                                                                                    \
static void rmsnorm_##T(const T *x, const T *w, T *out, int64_t n, float eps) {                       \
  float ss = 0.f;                                                                                     \
  for (int64_t i = 0; i < n; i++) { float v = LD_##T(x + i); ss += v * v; }                            \
  float r = 1.0f / sqrtf(ss / (float)n + eps);                                                        \
  for (int64_t i = 0; i < n; i++) ST_##T(out + i, LD_##T(w + i) * RND_##T(LD_##T(x + i) * r));        \
}
RMSNORM(float)
RMSNORM(uint16_t)

struct layer_dims {
  int64_t hidden, heads, kv_heads, head_dim, inter, block_size, threads;
  float eps, scale;
};

/* One decoder layer for one token, the residual stream x[hidden] updated in place.
   w: input norm, qkv, qkv bias (or NULL), o, post-attention norm, gate_up, down, and Qwen3's q/k
   head norms (or NULL).
   The token sits at position ctx_len - 1; its key and value are written into the caches
   ([slots, kv_heads, head_dim]) at the slot the block table gives, then attention reads every
   position of the context through the block table. cos, sin: [head_dim / 2] fp32 for the position.
   tmp: T scratch of hidden + (heads + 2 kv_heads) head_dim + heads head_dim + 3 inter elements;
   scores: fp32 scratch of heads * ctx_len. */
#define LAYER(T)                                                                                      \
void layer_##T(T *x, const T *const *w, T *k_cache, T *v_cache, const int64_t *block_table,           \
               int64_t ctx_len, const float *cos, const float *sin, const struct layer_dims *dm,      \
               T *tmp, float *scores) {                                                               \
  const int64_t h = dm->hidden, hq = dm->heads, hkv = dm->kv_heads, d = dm->head_dim, I = dm->inter;  \
  const int64_t half = d / 2, group = hq / hkv, bs = dm->block_size, pos = ctx_len - 1;               \
  T *hs = tmp, *qkv = hs + h, *attn = qkv + (hq + 2 * hkv) * d, *gu = attn + hq * d, *act = gu + 2 * I; \
  rmsnorm_##T(x, w[0], hs, h, dm->eps);                                                               \
  const int nt = (int)dm->threads;                                                                    \
  gemv_##T(w[1], hs, w[2], qkv, (hq + 2 * hkv) * d, h, nt);                                           \
  /* Qwen3's per-head RMSNorm of q and k before rotary (w[7]: [hq + hkv, d] weights, or NULL) */      \
  if (w[7])                                                                                           \
    for (int64_t head = 0; head < hq + hkv; head++)                                                   \
      rmsnorm_##T(qkv + head * d, w[7] + head * d, qkv + head * d, d, dm->eps);                       \
  /* rotate q and k heads: pairs (i, i + d/2), cos and sin rounded to T as the eager path does */      \
  for (int64_t head = 0; head < hq + hkv; head++) {                                                   \
    T *v = qkv + head * d;                                                                            \
    for (int64_t i = 0; i < half; i++) {                                                              \
      float c = RND_##T(cos[i]), s = RND_##T(sin[i]);                                                 \
      float a = LD_##T(v + i), b = LD_##T(v + i + half);                                              \
      ST_##T(v + i, RND_##T(a * c) - RND_##T(b * s));                                                 \
      ST_##T(v + i + half, RND_##T(b * c) + RND_##T(a * s));                                         \
    }                                                                                                 \
  }                                                                                                   \
  const int64_t slot = block_table[pos / bs] * bs + pos % bs;                                         \
  memcpy(k_cache + slot * hkv * d, qkv + hq * d, hkv * d * sizeof(T));                                \
  memcpy(v_cache + slot * hkv * d, qkv + (hq + hkv) * d, hkv * d * sizeof(T));                        \
  _Pragma("omp parallel for schedule(static) num_threads(nt) if (hq * ctx_len * d >= 262144)")        \
  for (int64_t head = 0; head < hq; head++) {                                                         \
    const T *q = qkv + head * d;                                                                      \
    const int64_t kvh = head / group;                                                                 \
    float *sc = scores + head * ctx_len, mx = -INFINITY, sum = 0.f;                                   \
    float qf[d];                                                                                      \
    for (int64_t i = 0; i < d; i++) qf[i] = LD_##T(q + i);                                            \
    for (int64_t p = 0; p < ctx_len; p++) {                                                           \
      const T *k = k_cache + ((block_table[p / bs] * bs + p % bs) * hkv + kvh) * d;                   \
      float dot = 0.f;                                                                                \
      for (int64_t i = 0; i < d; i++) dot += qf[i] * LD_##T(k + i);                                   \
      sc[p] = dot * dm->scale;                                                                        \
      mx = sc[p] > mx ? sc[p] : mx;                                                                   \
    }                                                                                                 \
    for (int64_t p = 0; p < ctx_len; p++) { sc[p] = expf(sc[p] - mx); sum += sc[p]; }                 \
    float out[d];                                                                                     \
    for (int64_t i = 0; i < d; i++) out[i] = 0.f;                                                     \
    for (int64_t p = 0; p < ctx_len; p++) {                                                           \
      const T *vv = v_cache + ((block_table[p / bs] * bs + p % bs) * hkv + kvh) * d;                  \
      const float pr = sc[p] / sum;                                                                   \
      for (int64_t i = 0; i < d; i++) out[i] += pr * LD_##T(vv + i);                                  \
    }                                                                                                 \
    for (int64_t i = 0; i < d; i++) ST_##T(attn + head * d + i, out[i]);                              \
  }                                                                                                   \
  gemv_##T(w[3], attn, NULL, hs, h, hq * d, nt);                                                      \
  for (int64_t i = 0; i < h; i++) ST_##T(x + i, LD_##T(x + i) + LD_##T(hs + i));                      \
  rmsnorm_##T(x, w[4], hs, h, dm->eps);                                                               \
  gemv_##T(w[5], hs, NULL, gu, 2 * I, h, nt);                                                         \
  for (int64_t i = 0; i < I; i++) {                                                                   \
    float g = LD_##T(gu + i);                                                                         \
    ST_##T(act + i, RND_##T(g / (1.0f + expf(-g))) * LD_##T(gu + I + i));                           \
  }                                                                                                   \
  gemv_##T(w[6], act, NULL, hs, h, I, nt);                                                            \
  for (int64_t i = 0; i < h; i++) ST_##T(x + i, LD_##T(x + i) + LD_##T(hs + i));                      \
}                                                                                                     \
/* The final norm and the LM head: logits[vocab] as fp32 (the head's output rounded to T first). */   \
void head_##T(const T *x, const T *norm_w, const T *lm_w, float *logits, int64_t hidden, int64_t vocab, \
              float eps, T *tmp, int threads) {                                                       \
  T *hs = tmp, *out = tmp + hidden;                                                                   \
  rmsnorm_##T(x, norm_w, hs, hidden, eps);                                                            \
  gemv_##T(lm_w, hs, NULL, out, vocab, hidden, threads);                                              \
  for (int64_t i = 0; i < vocab; i++) logits[i] = LD_##T(out + i);                                    \
}
LAYER(float)
LAYER(uint16_t)
"""

DEFAULT_FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC")
_P, _I = ctypes.c_void_p, ctypes.c_int64
_lib: ctypes.CDLL | None = None  # this process's build, once load() found or built it
_tried = False


def compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def build(cache_dir: pathlib.Path, flags: tuple[str, ...] = DEFAULT_FLAGS, source: str = SOURCE,
          name: str = "cpu-kernels") -> pathlib.Path:
    """Compile `source` (once per source, compiler, flags and CPU) and return the library's path."""
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler (cc, gcc or $CC) on PATH")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False).stdout
    cpu = read_cpu_info()
    key = hashlib.sha256("\0".join([source, cc, version, *flags, cpu.model, *sorted(cpu.flags)]).encode())
    cache_dir.mkdir(parents=True, exist_ok=True)
    lib = cache_dir / f"{name}-{key.hexdigest()[:16]}.so"
    if lib.exists():
        return lib
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        src = pathlib.Path(tmp) / f"{name}.c"
        src.write_text(source)
        out = pathlib.Path(tmp) / lib.name
        done = subprocess.run([cc, *flags, "-o", str(out), str(src)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{cc} failed: {done.stderr.strip()[-2000:]}")
        os.replace(out, lib)  # atomic: a replica starting beside us sees the whole file or none
    return lib


class LayerDims(ctypes.Structure):
    _fields_ = [("hidden", ctypes.c_int64), ("heads", ctypes.c_int64), ("kv_heads", ctypes.c_int64),
                ("head_dim", ctypes.c_int64), ("inter", ctypes.c_int64), ("block_size", ctypes.c_int64),
                ("threads", ctypes.c_int64),
                ("eps", ctypes.c_float), ("scale", ctypes.c_float)]


def open_library(path: pathlib.Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    for name in ("onerow_f32", "onerow_bf16"):
        getattr(lib, name).argtypes = [_P, _P, _P, _P, _I, _I, ctypes.c_int]
        getattr(lib, name).restype = None
    for t in ("float", "uint16_t"):
        layer, head = getattr(lib, f"layer_{t}"), getattr(lib, f"head_{t}")
        layer.argtypes = [_P, _P, _P, _P, _P, _I, _P, _P, ctypes.POINTER(LayerDims), _P, _P]
        head.argtypes = [_P, _P, _P, _P, _I, _I, ctypes.c_float, _P, ctypes.c_int]
        layer.restype = head.restype = None
    return lib


def load(cache_dir: pathlib.Path) -> bool:
    """Build or find the kernel for this process (once); False (logged) where it cannot be had."""
    global _lib, _tried
    if _tried:
        return _lib is not None
    _tried = True
    try:
        _lib = open_library(build(cache_dir / "kernels"))
    except (OSError, RuntimeError) as e:
        log.warning("CPU kernels unavailable; a lone decode runs in torch",
                    extra={"error": f"{type(e).__name__}: {e}"})
    return _lib is not None


def library() -> ctypes.CDLL:
    assert _lib is not None, "load() first"
    return _lib


def supports(weight: torch.Tensor) -> bool:
    return weight.device.type == "cpu" and weight.dtype in (torch.float32, torch.bfloat16) and weight.is_contiguous()


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
           lib: ctypes.CDLL | None = None) -> torch.Tensor:
    """x [1, in] (or [in]) times weight [out, in] in weight's dtype; bias [out] or None."""
    lib = lib or _lib
    assert lib is not None
    rows, n = weight.shape
    x = x.contiguous()
    y = torch.empty((*x.shape[:-1], rows), dtype=weight.dtype)
    fn = lib.onerow_f32 if weight.dtype == torch.float32 else lib.onerow_bf16
    fn(weight.data_ptr(), x.data_ptr(), None if bias is None else bias.data_ptr(), y.data_ptr(), rows, n,
       torch.get_num_threads())
    return y
