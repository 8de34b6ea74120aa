"""The decode step without Python in the way: compiled on CPU, captured in CUDA graphs on GPU.

A step of decodes only (one new token per running sequence, the common step once prompts
are in) goes through `LlamaForCausalLM.decode`, whose inputs are a handful of tensors.

- CPU: `torch.compile` (inductor) turns the step into a few generated C++ kernels around
  the oneDNN projections: RMSNorm, rotary, SiLU and the residual adds fuse, and the
  attention reads the paged cache in place. What is compiled is one decoder layer's step
  ("regional" compilation): all layers share its graph, so compile time does not grow
  with depth. Batch size and context width are dynamic; torch specialises batch 1 on its
  own, so two graphs are compiled in all, instead of one per batch-size bucket (with
  every layer unrolled, the 12-layer benchmark model took ~500 s to compile on the
  shared 2-core machine; docs/benchmarks.md has the figures).
- CUDA: the step is captured once per batch-size bucket (1, 2, 4, 8, then multiples of 8)
  with a fixed block-table width, and replayed: one graph launch instead of hundreds of
  kernel launches. A batch is padded up to its bucket with rows that write into a scratch
  KV block nobody reads. Not yet run on a GPU.

Compiled artefacts go to the engine's cache directory (the pod's cache volume), so a
restart or a second replica on the same volume reuses them (`configure_cache`).
Prefill steps and mixed steps stay eager.
"""

from __future__ import annotations

import logging
import os
import pathlib
import tempfile
import time
from collections.abc import Sequence

import torch

from .attention import DecodeBatch

log = logging.getLogger("llmfleet.engine")
KVCaches = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: (keys, values), each [blocks, block_size, Hkv, D]


def default_cache_dir() -> pathlib.Path:
    """$XDG_CACHE_HOME/llmfleet/compile: in a pod, XDG_CACHE_HOME is the cache volume."""
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "llmfleet" / "compile"


def configure_cache(cache_dir: pathlib.Path) -> pathlib.Path:
    """Point inductor's and Triton's on-disk caches at `cache_dir` (unless the caller set them).

    An unwritable directory costs the reuse, not the compilation: a private temporary one is used."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        probe = cache_dir / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        fallback = pathlib.Path(tempfile.mkdtemp(prefix="llmfleet-compile-"))
        log.warning("compile cache directory not writable; artefacts will not be reused",
                    extra={"cache_dir": str(cache_dir), "error": str(e), "using": str(fallback)})
        cache_dir = fallback
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir / "inductor"))
    os.environ.setdefault("TRITON_CACHE_DIR", str(cache_dir / "triton"))
    return cache_dir


def batch_buckets(max_num_seqs: int) -> list[int]:
    """1, 2, 4, 8, then every multiple of 8, up to and including max_num_seqs (as vLLM captures)."""
    out = [b for b in (1, 2, 4, 8) if b < max_num_seqs]
    out += list(range(16, max_num_seqs, 8))
    return [*out, max_num_seqs] if max_num_seqs not in out else out


def bucket_for(n: int, buckets: Sequence[int]) -> int | None:
    """The smallest bucket holding n sequences, or None when n is above the largest."""
    return next((b for b in buckets if b >= n), None)


class CompiledDecoder:
    """CPU: the decode step compiled by inductor, dynamic in batch size and context width."""

    min_width = 2  # a width of 1 would get a graph of its own (torch specialises sizes 0 and 1)
    warm_width = 3

    def __init__(self, model, kv_caches: KVCaches):
        # The pool's size stays symbolic like the batch: it follows the memory budget, and the
        # on-disk artefacts should serve every budget. Each engine in a process adds its own two
        # graphs; past the limit torch would silently run eager, so that is made an error.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        torch._dynamo.config.fail_on_recompile_limit_hit = True
        self.model, self.kv_caches = model, kv_caches
        self.max_batch = 1 << 30
        compiled = torch.compile(type(model.layers[0]).decode_step, dynamic=False, fullgraph=True)

        def step(layer, x, cos, sin, k_cache, v_cache, slot_mapping, block_tables, context_lens):
            # Only these sizes vary: the batch, the block-table width and the pool's block count.
            # Everything else (hidden size, heads, block size) stays static, so the kernels are
            # specialised to the model. Size-1 batches get their own graph (torch specialises 1).
            for t, dims in ((x, (0,)), (cos, (0,)), (sin, (0,)), (slot_mapping, (0,)), (block_tables, (0, 1)),
                            (context_lens, (0,)), (k_cache, (0,)), (v_cache, (0,))):
                for dim in dims:
                    if t.shape[dim] > 1:
                        torch._dynamo.mark_dynamic(t, dim)
            return compiled(layer, x, cos, sin, k_cache, v_cache, slot_mapping, block_tables, context_lens)

        model.layer_step = step

    def __call__(self, input_ids: torch.Tensor, positions: torch.Tensor, batch: DecodeBatch) -> torch.Tensor:
        return self.model.decode(input_ids, positions, self.kv_caches, batch)

    def warm_up(self, scratch_block: int) -> float:
        """Compile both graphs (batch 1, and any batch) on the scratch block; returns seconds spent."""
        start = time.monotonic()
        # sizes distinct from each other (batch 2, width 3), so torch does not take them for one symbol
        for b in (1, 2):
            self(*_scratch_inputs(b, self.warm_width, scratch_block, self.kv_caches[0][0]))
        return time.monotonic() - start


class CudaGraphDecoder:
    """CUDA: the decode step captured per batch-size bucket with a fixed block-table width."""

    def __init__(self, model, kv_caches: KVCaches, buckets: list[int], width: int, scratch_block: int):
        self.model, self.kv_caches, self.buckets = model, kv_caches, buckets
        self.max_batch = buckets[-1]
        self.width = width
        self.scratch_block = scratch_block
        self.block_size = kv_caches[0][0].shape[1]
        ids, pos, batch = _scratch_inputs(self.max_batch, width, scratch_block, kv_caches[0][0])
        self.input_ids, self.positions, self.batch = ids, pos, batch
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.outputs: dict[int, torch.Tensor] = {}

    def warm_up(self, scratch_block: int) -> float:
        """Capture every bucket, largest first so the smaller graphs share its memory pool."""
        start = time.monotonic()
        pool = None
        for b in reversed(self.buckets):
            args = self._static(b)
            self.model.decode(*args)  # compiles the Triton kernel and settles allocations outside capture
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self.outputs[b] = self.model.decode(*args)
            pool = graph.pool()
            self.graphs[b] = graph
        torch.cuda.synchronize()
        return time.monotonic() - start

    def _static(self, b: int):
        batch = DecodeBatch(self.batch.slot_mapping[:b], self.batch.block_tables[:b], self.batch.context_lens[:b])
        return self.input_ids[:b], self.positions[:b], self.kv_caches, batch

    def __call__(self, input_ids: torch.Tensor, positions: torch.Tensor, batch: DecodeBatch) -> torch.Tensor:
        n, width = input_ids.shape[0], batch.block_tables.shape[1]
        b = bucket_for(n, self.buckets)
        assert b is not None and width <= self.width, "the runner sends only batches that fit a bucket"
        self.input_ids[:n].copy_(input_ids)
        self.positions[:n].copy_(positions)
        self.batch.slot_mapping[:n].copy_(batch.slot_mapping)
        self.batch.block_tables[:n, :width].copy_(batch.block_tables)
        self.batch.context_lens[:n].copy_(batch.context_lens)
        if b > n:  # padding rows: one token of context in the scratch block
            self.input_ids[n:b].zero_()
            self.positions[n:b].zero_()
            self.batch.slot_mapping[n:b].fill_(self.scratch_block * self.block_size)
            self.batch.block_tables[n:b].fill_(self.scratch_block)
            self.batch.context_lens[n:b].fill_(1)
        self.graphs[b].replay()
        return self.outputs[b][:n].clone()


def _scratch_inputs(b: int, width: int, scratch_block: int, k_cache: torch.Tensor):
    """Inputs for b sequences of one token each, all in the scratch block (written, never read)."""
    dev = k_cache.device
    block_size = k_cache.shape[1]
    ids = torch.zeros(b, dtype=torch.long, device=dev)
    positions = torch.zeros(b, dtype=torch.long, device=dev)
    slots = torch.full((b,), scratch_block * block_size, dtype=torch.long, device=dev)
    tables = torch.full((b, width), scratch_block, dtype=torch.long, device=dev)
    lens = torch.ones(b, dtype=torch.long, device=dev)
    return ids, positions, DecodeBatch(slots, tables, lens)
