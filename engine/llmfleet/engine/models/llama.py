"""The Llama family (Llama 2/3, Mistral, Qwen2, Qwen3) over a paged KV cache.

Weights are fused for the step's matmuls: q/k/v as one [(Hq + 2·Hkv)·D, hidden]
matrix and gate/up as one [2·I, hidden] matrix, so decoding reads each layer's
weights in a few wide passes; on CPU they are prepacked for oneDNN (linear.py).
Qwen3 is this layout plus an RMSNorm over each query and key head before rotary
(`HeadNorm`: q_norm's weight for the query heads, k_norm's for the key heads).

`forward` runs any step (prefill chunks and decodes, eager); `decode` runs a step of
decodes only on a few tensors: its layers are what torch.compile compiles on CPU (one
graph serves every layer) and the whole of it is what CUDA graphs capture
(decode_graph.py). Both share the layers' code; only the attention differs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..attention import AttentionMetadata, DecodeBatch, decode_attention, paged_attention
from ..errors import ModelLoadError
from ..linear import Linear, pack_linears
from ..loader import ModelConfig


def rope_inv_freq(cfg: ModelConfig) -> torch.Tensor:
    d = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    sc = cfg.rope_scaling
    if not sc:
        return inv_freq
    factor = float(sc.get("factor", 1.0))
    if sc["rope_type"] == "linear":
        return inv_freq / factor
    # llama3: long wavelengths are slowed by `factor`, short ones kept, the band between interpolated.
    low = float(sc.get("low_freq_factor", 1.0))
    high = float(sc.get("high_freq_factor", 4.0))
    old_ctx = float(sc.get("original_max_position_embeddings", 8192))
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_ctx / low, inv_freq / factor, inv_freq)
    smooth = (old_ctx / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_ctx / high) & (wavelen <= old_ctx / low)
    return torch.where(medium, smoothed, scaled)


class Rotary(nn.Module):
    cos: torch.Tensor
    sin: torch.Tensor

    def __init__(self, cfg: ModelConfig, max_positions: int):
        super().__init__()
        t = torch.arange(max_positions, dtype=torch.float64)
        freqs = torch.outer(t, rope_inv_freq(cfg))
        self.register_buffer("cos", freqs.cos().float(), persistent=False)
        self.register_buffer("sin", freqs.sin().float(), persistent=False)

    def tables(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin for this step's positions, [T, 1, D/2]: looked up once per step, not per layer."""
        return self.cos[positions].unsqueeze(1).to(dtype), self.sin[positions].unsqueeze(1).to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [T, H, D]; rotate pairs (i, i + D/2) as Hugging Face's Llama does."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Hugging Face's order (normalise in fp32, round, then scale): torch.rms_norm gives the same bits as
        # x * rsqrt(mean(x²) + eps) in one op where that formula takes six small ones per call.
        return self.weight * torch.rms_norm(x.float(), self.weight.shape, None, self.eps).to(x.dtype)


class HeadNorm(nn.Module):
    """Qwen3's q_norm and k_norm as one op: RMSNorm over head_dim of every q and k head, HF's rounding.

    weight [Hq + Hkv, D]: q_norm's weight repeated for each query head, then k_norm's for each key head,
    so the [T, Hq + Hkv, D] view that rotary takes is normalised in one call."""

    def __init__(self, heads: int, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(heads, dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * torch.rms_norm(x.float(), x.shape[-1:], None, self.eps).to(x.dtype)


# (q, k, v, k_cache, v_cache, scale) -> attention output [T, Hq, D]; writes k and v into the cache
Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h, d = cfg.hidden_size, cfg.head_dim
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, d
        self.q_size, self.kv_size = cfg.num_heads * d, cfg.num_kv_heads * d
        self.input_layernorm = RMSNorm(h, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(h, cfg.rms_norm_eps)
        self.qkv = Linear(h, self.q_size + 2 * self.kv_size, bias=cfg.attention_bias)
        self.qk_norm = HeadNorm(cfg.num_heads + cfg.num_kv_heads, d, cfg.rms_norm_eps) if cfg.qk_norm else None
        self.o = Linear(self.q_size, h)
        self.gate_up = Linear(h, 2 * cfg.intermediate_size)
        self.down = Linear(cfg.intermediate_size, h)
        self.scale = d ** -0.5

    def forward(self, x, rope: tuple[torch.Tensor, torch.Tensor], kv_cache, attend: Attend):
        t = x.shape[0]
        residual = x
        hs = self.input_layernorm(x)
        qk, v = self.qkv(hs).split([self.q_size + self.kv_size, self.kv_size], dim=-1)
        # q and k are normalised and rotate together, as the heads of one [T, Hq + Hkv, D] view: half the small ops
        qk = qk.view(t, self.num_heads + self.num_kv_heads, self.head_dim)
        if self.qk_norm is not None:
            qk = self.qk_norm(qk)
        qk = apply_rotary(qk, *rope)
        q, k = qk.split([self.num_heads, self.num_kv_heads], dim=1)
        v = v.view(t, self.num_kv_heads, self.head_dim)
        attn = attend(q, k, v, kv_cache[0], kv_cache[1], self.scale)
        x = residual + self.o(attn.view(t, self.q_size))
        residual = x
        gate, up = self.gate_up(self.post_attention_layernorm(x)).chunk(2, dim=-1)
        return residual + self.down(nn.functional.silu(gate) * up)

    # The decode path's attention: decode_attention (plain torch) or a kernel with its contract.
    decode_kernel: Callable[..., torch.Tensor] = staticmethod(decode_attention)

    def decode_step(self, x, cos, sin, k_cache, v_cache, slot_mapping, block_tables, context_lens):
        """One layer of a decode step, on plain tensors: the region torch.compile compiles once for all layers."""
        batch = DecodeBatch(slot_mapping, block_tables, context_lens)
        kernel = self.decode_kernel

        def attend(q, k, v, kc, vc, scale):
            return kernel(q, k, v, kc, vc, batch, scale)

        return self(x, (cos, sin), (k_cache, v_cache), attend)


class LlamaForCausalLM(nn.Module):
    def __init__(self, cfg: ModelConfig, max_positions: int):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Parameter(torch.empty(cfg.vocab_size, cfg.hidden_size))
        self.layers: list[DecoderLayer] = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_layers))  # type: ignore[assignment]
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.lm_head = Linear(cfg.hidden_size, cfg.vocab_size)
        self.rotary = Rotary(cfg, max_positions)
        # How decode runs a layer: DecoderLayer.decode_step, or its compiled form (decode_graph.py).
        self.layer_step: Callable[..., torch.Tensor] = DecoderLayer.decode_step

    def set_decode_kernel(self, kernel: Callable[..., torch.Tensor]) -> None:
        for layer in self.layers:
            layer.decode_kernel = kernel

    @torch.inference_mode()
    def forward(self, input_ids, positions, kv_caches, meta: AttentionMetadata, logits_idx):
        def attend(q, k, v, k_cache, v_cache, scale):
            return paged_attention(q, k, v, k_cache, v_cache, meta, scale)

        x = self.embed_tokens[input_ids]
        rope = self.rotary.tables(positions, x.dtype)
        for layer, cache in zip(self.layers, kv_caches, strict=True):
            x = layer(x, rope, cache, attend)
        x = self.norm(x[logits_idx])
        return self.lm_head(x).float()

    def decode(self, input_ids, positions, kv_caches, batch: DecodeBatch) -> torch.Tensor:
        """One token per sequence: logits [B, vocab] float32. Captured whole by CUDA graphs; on CPU
        each layer is a call of the compiled layer step and the few ops around them stay eager."""
        x = self.embed_tokens[input_ids]
        cos, sin = self.rotary.tables(positions, x.dtype)
        step = self.layer_step
        for layer, (k_cache, v_cache) in zip(self.layers, kv_caches, strict=True):
            x = step(layer, x, cos, sin, k_cache, v_cache, batch.slot_mapping, batch.block_tables,
                     batch.context_lens)
        return self.lm_head(self.norm(x)).float()

    # -- weights ---------------------------------------------------------------------------
    @torch.no_grad()
    def load_weights(self, weights, keep_plain: bool = False) -> None:
        """Fill the fused, transposed parameters from Hugging Face tensor names; keep_plain: see pack_linears."""
        cfg = self.cfg
        pending: dict[str, torch.Tensor] = {}
        seen_head = False
        for name, w in weights:
            if name.startswith("model."):
                name = name[len("model."):]
            if name == "embed_tokens.weight":
                self.embed_tokens.copy_(w)
                if cfg.tie_word_embeddings and not seen_head:
                    self.lm_head.weight.copy_(w)
            elif name == "lm_head.weight":
                self.lm_head.weight.copy_(w)
                seen_head = True
            elif name == "norm.weight":
                self.norm.weight.copy_(w)
            elif name.startswith("layers."):
                pending[name] = w
            elif "rotary_emb" in name:
                continue
            else:
                raise ModelLoadError(f"unexpected weight {name!r} in checkpoint")
        if not cfg.tie_word_embeddings and not seen_head:
            raise ModelLoadError("checkpoint has no lm_head.weight and tie_word_embeddings is false")
        for i, layer in enumerate(self.layers):
            p = f"layers.{i}."

            def take(suffix: str, _p=p) -> torch.Tensor:
                try:
                    return pending.pop(_p + suffix)
                except KeyError:
                    raise ModelLoadError(f"checkpoint is missing weight 'model.{_p}{suffix}'") from None

            qkv = torch.cat([take("self_attn.q_proj.weight"), take("self_attn.k_proj.weight"),
                             take("self_attn.v_proj.weight")])
            layer.qkv.weight.copy_(qkv)
            if layer.qkv.bias is not None:
                layer.qkv.bias.copy_(torch.cat([take("self_attn.q_proj.bias"), take("self_attn.k_proj.bias"),
                                                take("self_attn.v_proj.bias")]))
            if layer.qk_norm is not None:
                layer.qk_norm.weight.copy_(torch.cat([take("self_attn.q_norm.weight").expand(cfg.num_heads, -1),
                                                      take("self_attn.k_norm.weight").expand(cfg.num_kv_heads, -1)]))
            layer.o.weight.copy_(take("self_attn.o_proj.weight"))
            layer.gate_up.weight.copy_(torch.cat([take("mlp.gate_proj.weight"), take("mlp.up_proj.weight")]))
            layer.down.weight.copy_(take("mlp.down_proj.weight"))
            layer.input_layernorm.weight.copy_(take("input_layernorm.weight"))
            layer.post_attention_layernorm.weight.copy_(take("post_attention_layernorm.weight"))
        leftover = [k for k in pending if "rotary_emb" not in k]
        if leftover:
            raise ModelLoadError(f"unexpected weights in checkpoint: {sorted(leftover)[:5]}")
        for module in [*self.layers, self.lm_head]:
            pack_linears(module, keep_plain)  # one store per layer, so every layer's compiled graph is the same
