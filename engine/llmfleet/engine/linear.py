"""Projections for the model: oneDNN-prepacked on CPU, plain F.linear elsewhere.

On CPU, torch's default fp32 F.linear goes to MKL sgemm, which on the small row counts
of decoding runs single-threaded and far below memory bandwidth. oneDNN's inner
product with the weight reordered once into its blocked layout ("prepacked", as
torch's own inductor does for CPU) was measured 1.4x faster at one row and 2.4x at
16 rows on this project's 2-core machine (docs/benchmarks.md). The weight is packed
once after loading; set LLMFLEET_ONEDNN=0 to fall back to F.linear.

A packed weight is an opaque oneDNN tensor that torch.compile cannot trace. Inside a
compiled graph the projection is the custom op `llmfleet::packed_linear`, which finds
the packed weight by (key, index): the key, one per decoder layer, is a tensor input of
the graph and the index a constant (the projection's place in the layer), so every layer,
and every engine or restart of the same architecture, gets the same graph and shares the
on-disk compile cache. The packed weights are kept once, for the eager and the compiled path alike.

On CUDA the weight stays a plain tensor and cuBLAS does the work.
"""

from __future__ import annotations

import itertools
import os
import weakref

import torch
import torch.nn.functional as F
from torch import nn

_STORES: dict[int, list[torch.Tensor]] = {}
_KEYS = itertools.count(1)


def onednn_available() -> bool:
    return (os.environ.get("LLMFLEET_ONEDNN", "1") != "0" and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
            and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


@torch.library.custom_op("llmfleet::packed_linear", mutates_args=())
def packed_linear(x: torch.Tensor, key: torch.Tensor, index: int, out_features: int,
                  bias: torch.Tensor | None) -> torch.Tensor:
    weight = _STORES[int(key.item())][index]
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


@packed_linear.register_fake
def _(x, key, index, out_features, bias):
    return x.new_empty((*x.shape[:-1], out_features))


def pack_linears(module: nn.Module, keep_plain: bool = False) -> None:
    """Pack every Linear in `module` (CPU only) into one store, which lives as long as the module.

    Packing per decoder layer gives every layer the same indices (0, 1, 2, 3) and a key of its
    own, so one compiled graph serves all layers. keep_plain keeps the [out, in] weight as well,
    for the one-token kernels (one_token.py): twice the weights' memory."""
    linears = [m for m in module.modules() if isinstance(m, Linear)]
    if not linears or not all(m.can_pack() for m in linears):
        return
    key = next(_KEYS)
    store = _STORES[key] = []
    key_tensor = torch.tensor([key], dtype=torch.long)
    for i, lin in enumerate(linears):
        store.append(torch.ops.mkldnn._reorder_linear_weight(lin.weight.detach()))
        if not keep_plain:
            lin.weight = nn.Parameter(torch.empty(0, dtype=lin.weight.dtype), requires_grad=False)
        lin.packed_index, lin.packed_store = i, store
        lin.register_buffer("packed_key", key_tensor, persistent=False)  # a graph input, not a constant
    weakref.finalize(module, _STORES.pop, key, None)


class Linear(nn.Module):
    """y = x W^T (+ b), W in Hugging Face's [out, in] layout (fused rows allowed)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__()
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.packed_index = -1
        self.packed_key: torch.Tensor | None
        self.register_buffer("packed_key", None, persistent=False)
        self.packed_store: list[torch.Tensor] = []

    def can_pack(self) -> bool:
        return (self.weight.device.type == "cpu" and onednn_available()
                and self.weight.dtype in (torch.float32, torch.bfloat16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed_index < 0:
            return F.linear(x, self.weight, self.bias)
        if torch.compiler.is_compiling():
            return packed_linear(x, self.packed_key, self.packed_index, self.out_features, self.bias)
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_store[self.packed_index], self.bias, "none", [], "")
