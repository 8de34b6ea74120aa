"""Loads the model, owns the KV-cache tensors, and runs one scheduled step.

`prepare` turns the scheduler's plan into flat tensors (input ids, positions,
slot mapping, block tables); `run` returns the logits of the sequences that
sample this step (those whose scheduled tokens reach their end). A step of
decodes only goes to the compiled decoder when one is enabled (decode_graph.py).

The KV pool has one block more than the block manager hands out: the scratch
block, where padding rows of a compiled or captured decode write and nobody reads.
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any

import torch

from . import cpu_kernels
from .attention import AttentionMetadata, DecodeBatch, PrefillChunk
from .cpu_features import preferred_cpu_dtype, read_cpu_info
from .decode_graph import default_cache_dir
from .errors import ModelLoadError
from .loader import ModelConfig, iter_weights, load_model_config
from .models.llama import LlamaForCausalLM
from .one_token import OneTokenDecoder
from .scheduler import SchedulerOutput

log = logging.getLogger("llmfleet.engine")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEFAULT_CPU_KV_MB = 512


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("--device cuda requested but no CUDA device is available")
    return torch.device(name)


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        # GPUs want half precision; on CPU bf16 pays only where the CPU does it natively (cpu_features.py).
        return torch.bfloat16 if device.type == "cuda" else DTYPES[preferred_cpu_dtype(read_cpu_info())]
    return DTYPES[name]


class ModelRunner:
    def __init__(self, model_dir: pathlib.Path, device: str = "auto", dtype: str = "auto",
                 block_size: int = 16, max_model_len: int | None = None, kv_cache_memory_mb: int = 0,
                 num_kv_blocks: int = 0, max_num_seqs: int = 64, kernel_cache_dir: pathlib.Path | None = None,
                 use_cpu_kernels: bool = True):
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        self.cfg: ModelConfig = load_model_config(model_dir)
        cap = self.cfg.max_position_embeddings
        if self.cfg.sliding_window and self.cfg.sliding_window < cap:
            cap = self.cfg.sliding_window  # sliding-window attention is not implemented: stay inside the window
        self.max_model_len = min(max_model_len or min(cap, 4096), cap)
        if max_model_len and max_model_len > cap:
            raise ModelLoadError(f"--max-model-len {max_model_len} exceeds the model's limit of {cap} tokens")
        self.block_size = block_size
        with torch.device(self.device):
            model = LlamaForCausalLM(self.cfg, self.max_model_len)
        model.to(self.dtype)
        model.rotary.float()
        # A lone decode runs in the CPU kernels (one_token.py) where they build for this CPU.
        kernels = (self.device.type == "cpu" and self.dtype in (torch.float32, torch.bfloat16)
                   and use_cpu_kernels and cpu_kernels.load(kernel_cache_dir or default_cache_dir()))
        model.load_weights(iter_weights(model_dir), keep_plain=kernels)
        self.model = model.eval()
        self.num_blocks = num_kv_blocks or self._blocks_from_budget(kv_cache_memory_mb, max_num_seqs)
        if self.num_blocks * block_size < self.max_model_len:
            raise ModelLoadError(
                f"KV cache of {self.num_blocks} blocks × {block_size} tokens cannot hold one "
                f"{self.max_model_len}-token sequence: raise --kv-cache-memory-mb or lower --max-model-len")
        self.scratch_block = self.num_blocks
        shape = (self.num_blocks + 1, block_size, self.cfg.num_kv_heads, self.cfg.head_dim)

        def pool() -> torch.Tensor:
            return torch.zeros(shape, dtype=self.dtype, device=self.device)

        # Keys and values in tensors of their own, not views of one: a compiled step writes into
        # inputs that alias each other only by copying them whole.
        self.kv_caches: list[tuple[torch.Tensor, torch.Tensor]] = [(pool(), pool())
                                                                    for _ in range(self.cfg.num_layers)]
        self.max_num_seqs = max_num_seqs
        self.one_token: OneTokenDecoder | None = None
        if kernels and OneTokenDecoder.supports(model):
            self.one_token = OneTokenDecoder(model, self.kv_caches, self.max_model_len, cpu_kernels.library())
        self.decoder: Any = None  # CompiledDecoder | CudaGraphDecoder, once enable_compiled_decode() ran
        self.compiled_steps = 0  # steps that went through it
        self.lone_decode_steps = 0  # steps that were one decode (batch 1), whichever path ran them
        self.one_token_steps = 0  # those that went through the CPU kernels
        log.info("model loaded", extra={"architecture": self.cfg.architecture, "device": str(self.device),
                                        "dtype": str(self.dtype), "kv_blocks": self.num_blocks,
                                        "max_model_len": self.max_model_len,
                                        "one_token_kernels": self.one_token is not None,
                                        "cpu": read_cpu_info().describe() if self.device.type == "cpu" else None})

    def bytes_per_block(self) -> int:
        c = self.cfg
        elem = torch.tensor([], dtype=self.dtype).element_size()
        return 2 * c.num_layers * self.block_size * c.num_kv_heads * c.head_dim * elem

    def _blocks_from_budget(self, mb: int, max_num_seqs: int) -> int:
        if mb:
            budget = mb * 2**20
        elif self.device.type == "cuda":
            free, _total = torch.cuda.mem_get_info(self.device)
            budget = int(free * 0.9)
        else:
            budget = DEFAULT_CPU_KV_MB * 2**20
        # More blocks than twice what a full batch of max-length sequences can hold only feeds the
        # prefix cache; cap there so a small model on CPU does not zero-fill its whole budget.
        useful = 2 * max_num_seqs * -(-self.max_model_len // self.block_size)
        return max(1, min(budget // self.bytes_per_block(), useful))

    def prepare(self, plan: SchedulerOutput):
        """Flatten the plan: decodes (one token each) first, then prefill chunks."""
        bs = self.block_size
        # A decode is any sequence computing exactly its last token: its context is all in the cache.
        decodes = [s for s in plan.scheduled if s.num_new_tokens == 1 and s.completes_prompt]
        decode_ids = {id(s) for s in decodes}
        prefills = [s for s in plan.scheduled if id(s) not in decode_ids]
        input_ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        logits_idx: list[int] = []
        sampled = []
        for item in decodes + prefills:
            seq, start = item.seq, item.seq.num_computed_tokens
            for pos in range(start, start + item.num_new_tokens):
                input_ids.append(seq.token_ids[pos])
                positions.append(pos)
                slots.append(seq.block_table[pos // bs] * bs + pos % bs)
            if item.completes_prompt:
                logits_idx.append(len(input_ids) - 1)
                sampled.append(seq)
        dev = self.device
        tables = lens = span = None
        if len(decodes) == 1:
            span = self._contiguous_context(decodes[0].seq)
        if decodes and span is None:
            width = max(len(s.seq.block_table) for s in decodes)
            tables = torch.tensor([s.seq.block_table + [0] * (width - len(s.seq.block_table)) for s in decodes],
                                  dtype=torch.long, device=dev)
            lens = torch.tensor([len(s.seq) for s in decodes], dtype=torch.long, device=dev)
        chunks = []
        offset = len(decodes)
        for item in prefills:
            chunks.append(PrefillChunk(offset, item.num_new_tokens, item.seq.num_computed_tokens,
                                       torch.tensor(item.seq.block_table, dtype=torch.long, device=dev)))
            offset += item.num_new_tokens
        meta = AttentionMetadata(torch.tensor(slots, dtype=torch.long, device=dev), len(decodes), tables, lens,
                                 chunks, decode_span=span)
        return (torch.tensor(input_ids, dtype=torch.long, device=dev),
                torch.tensor(positions, dtype=torch.long, device=dev), meta,
                torch.tensor(logits_idx, dtype=torch.long, device=dev), sampled)

    def _contiguous_context(self, seq) -> tuple[int, int] | None:
        """(first slot, length) when the sequence's context lies in consecutive blocks, else None."""
        n = len(seq)
        table = seq.block_table[:-(-n // self.block_size)]
        first = table[0]
        if table[-1] - first != len(table) - 1 or table != list(range(first, first + len(table))):
            return None
        return first * self.block_size, n

    def enable_compiled_decode(self, cache_dir: pathlib.Path) -> float:
        """Compile (CPU) or capture (CUDA) the decode step; returns the seconds it took."""
        from . import decode_graph

        decode_graph.configure_cache(cache_dir)
        if self.device.type == "cuda":
            from .triton_attention import triton_decode_attention

            self.model.set_decode_kernel(triton_decode_attention)
            width = -(-self.max_model_len // self.block_size)
            decoder: Any = decode_graph.CudaGraphDecoder(self.model, self.kv_caches,
                                                    decode_graph.batch_buckets(self.max_num_seqs), width,
                                                    self.scratch_block)
        else:
            decoder = decode_graph.CompiledDecoder(self.model, self.kv_caches)
        with torch.inference_mode():
            seconds = decoder.warm_up(self.scratch_block)
        self.decoder = decoder
        log.info("decode step compiled", extra={"seconds": round(seconds, 2), "cache_dir": str(cache_dir),
                                                "method": type(decoder).__name__})
        return seconds

    def prepare_decode(self, plan: SchedulerOutput):
        """A step of decodes only as the decoder's inputs, or None if the step is not one."""
        items = plan.scheduled
        if not items or len(items) > self.decoder.max_batch:
            return None
        if not all(i.num_new_tokens == 1 and i.completes_prompt for i in items):
            return None
        bs = self.block_size
        width = max(self.decoder_min_width, max(len(i.seq.block_table) for i in items))
        ids, positions, slots, tables, lens = [], [], [], [], []
        for item in items:
            seq = item.seq
            pos = len(seq) - 1
            ids.append(seq.token_ids[pos])
            positions.append(pos)
            slots.append(seq.block_table[pos // bs] * bs + pos % bs)
            tables.append(seq.block_table + [self.scratch_block] * (width - len(seq.block_table)))
            lens.append(len(seq))
        dev = self.device

        def t(x):
            return torch.tensor(x, dtype=torch.long, device=dev)

        return t(ids), t(positions), DecodeBatch(t(slots), t(tables), t(lens)), [i.seq for i in items]

    @property
    def decoder_min_width(self) -> int:
        return getattr(self.decoder, "min_width", 1)

    def run(self, plan: SchedulerOutput):
        """Run the model on the plan; return (sequences that sample, their logits [S, vocab] float32)."""
        items = plan.scheduled
        if len(items) == 1 and items[0].num_new_tokens == 1 and items[0].completes_prompt:
            self.lone_decode_steps += 1
            if self.one_token is not None:
                seq = items[0].seq
                self.one_token_steps += 1
                return [seq], self.one_token(seq.token_ids[len(seq) - 1], seq.block_table, len(seq))
        decode = self.prepare_decode(plan) if self.decoder is not None else None
        if decode is not None:
            input_ids, positions, batch, sampled = decode
            self.compiled_steps += 1
            return sampled, self.decoder(input_ids, positions, batch)
        input_ids, positions, meta, logits_idx, sampled = self.prepare(plan)
        logits = self.model(input_ids, positions, self.kv_caches, meta, logits_idx)
        return sampled, logits
