"""A lone decode on CPU in a few C calls: one per decoder layer, one for the norm and LM head.

At batch 1 a decode step is twelve-odd matrix-vector products and, around each layer, some
thirty small torch ops (norms, rotary, attention, SiLU, residual adds). The products are
bounded by how fast one core reads the weights; the small ops cost a few microseconds of
dispatch each, ~20 % of the step on the benchmark model. Here each layer is one call into
the CPU kernels (cpu_kernels.py), which do the same maths with the same roundings as the
eager layer (HF's order: normalise in fp32 and round, Qwen3's q/k head norms before rotary,
q and k rotated with cos and sin in the weights' dtype, SiLU rounded before the product) and
read the context through the block table where it lies in the paged cache.

Plain [out, in] weights are what the kernels read; where the runner also packs them for
oneDNN (linear.py, the larger batches), each weight is held twice. The runner sends a step
here when it is exactly one decode and the kernels built (`ModelRunner.run`).
"""

from __future__ import annotations

import ctypes

import torch

from . import cpu_kernels


class OneTokenDecoder:
    def __init__(self, model, kv_caches: list[tuple[torch.Tensor, torch.Tensor]], max_model_len: int,
                 lib: ctypes.CDLL):
        cfg = model.cfg
        self.model, self.kv_caches, self.lib = model, kv_caches, lib
        self.dtype = model.embed_tokens.dtype
        kind = "float" if self.dtype == torch.float32 else "uint16_t"
        self.layer_fn, self.head_fn = getattr(lib, f"layer_{kind}"), getattr(lib, f"head_{kind}")
        self.dims = cpu_kernels.LayerDims(cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim,
                                          cfg.intermediate_size, kv_caches[0][0].shape[1], 1, cfg.rms_norm_eps,
                                          cfg.head_dim ** -0.5)
        q = (cfg.num_heads + 2 * cfg.num_kv_heads) * cfg.head_dim
        self.tmp = torch.empty(max(cfg.hidden_size + q + cfg.num_heads * cfg.head_dim + 3 * cfg.intermediate_size,
                                   cfg.hidden_size + cfg.vocab_size), dtype=self.dtype)
        self.scores = torch.empty(cfg.num_heads * max_model_len, dtype=torch.float32)
        self.max_model_len = max_model_len
        self.layer_weights = []
        for layer in model.layers:
            ws = [layer.input_layernorm.weight, layer.qkv.weight, layer.qkv.bias, layer.o.weight,
                  layer.post_attention_layernorm.weight, layer.gate_up.weight, layer.down.weight,
                  None if layer.qk_norm is None else layer.qk_norm.weight]
            ptrs = (ctypes.c_void_p * len(ws))(*[None if w is None else w.data_ptr() for w in ws])
            self.layer_weights.append(ptrs)
        self.norm_w, self.head_w = model.norm.weight, model.lm_head.weight
        self.cos, self.sin = model.rotary.cos, model.rotary.sin  # [max_positions, D/2] fp32

    @staticmethod
    def supports(model) -> bool:
        """Plain, contiguous CPU weights of a dtype the kernels read, for every projection."""
        linears = [m for layer in model.layers for m in (layer.qkv, layer.o, layer.gate_up, layer.down)]
        return all(cpu_kernels.supports(lin.weight) and lin.weight.dim() == 2
                   for lin in [*linears, model.lm_head])

    def __call__(self, token: int, block_table: list[int], ctx_len: int) -> torch.Tensor:
        """Logits [1, vocab] float32 for `token` at position ctx_len - 1 (its context already cached)."""
        assert ctx_len <= self.max_model_len
        self.dims.threads = torch.get_num_threads()  # torch's count for this thread (it may not be OpenMP's yet)
        x = self.model.embed_tokens[token].clone()
        table = torch.tensor(block_table, dtype=torch.long)
        pos = ctx_len - 1
        cos, sin = self.cos[pos], self.sin[pos]
        tmp, scores, dims = self.tmp.data_ptr(), self.scores.data_ptr(), ctypes.byref(self.dims)
        xp, tp, cp, sp = x.data_ptr(), table.data_ptr(), cos.data_ptr(), sin.data_ptr()
        for ptrs, (kc, vc) in zip(self.layer_weights, self.kv_caches, strict=True):
            self.layer_fn(xp, ptrs, kc.data_ptr(), vc.data_ptr(), tp, ctx_len, cp, sp, dims, tmp, scores)
        logits = torch.empty((1, self.model.cfg.vocab_size), dtype=torch.float32)
        self.head_fn(xp, self.norm_w.data_ptr(), self.head_w.data_ptr(), logits.data_ptr(), self.dims.hidden,
                     self.model.cfg.vocab_size, self.dims.eps, tmp, self.dims.threads)
        return logits
