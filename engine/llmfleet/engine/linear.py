"""Projections for the model: oneDNN-prepacked on CPU, plain F.linear elsewhere.

On CPU, torch's default fp32 F.linear goes to MKL sgemm, which on the small row counts
of decoding runs single-threaded and far below memory bandwidth. oneDNN's inner
product with the weight reordered once into its blocked layout ("prepacked", as
torch's own inductor does for CPU) was measured 1.4x faster at one row and 2.4x at
16 rows on this project's 2-core machine (docs/benchmarks.md). The weight is packed
once after loading; set LLMFLEET_ONEDNN=0 to fall back to F.linear.

On CUDA the weight stays a plain tensor and cuBLAS does the work.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn


def onednn_available() -> bool:
    return (os.environ.get("LLMFLEET_ONEDNN", "1") != "0" and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
            and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


class Linear(nn.Module):
    """y = x W^T (+ b), W in Hugging Face's [out, in] layout (fused rows allowed)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self._packed: torch.Tensor | None = None

    @torch.no_grad()
    def pack(self) -> None:
        """Reorder the weight for oneDNN (CPU only); the plain copy is dropped to save memory."""
        if self.weight.device.type != "cpu" or not onednn_available():
            return
        if self.weight.dtype not in (torch.float32, torch.bfloat16):
            return
        self._packed = torch.ops.mkldnn._reorder_linear_weight(self.weight.detach())
        self.weight = nn.Parameter(torch.empty(0, dtype=self.weight.dtype), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x, self._packed, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)
