"""The synchronous engine: add requests, step, get token and text deltas back.

One `step()` = schedule → run the model on the planned tokens → sample → check
stop conditions → free what finished. Nothing here knows about HTTP or threads;
async_engine.py drives it from a background thread.
"""

from __future__ import annotations

import logging
import pathlib
import time
from dataclasses import dataclass

import torch

from .block_manager import BlockManager
from .config import EngineConfig
from .decode_graph import default_cache_dir
from .errors import InvalidRequest
from .loader import resolve_model_path
from .model_runner import ModelRunner
from .sampler import sample
from .scheduler import Scheduler
from .sequence import SamplingParams, Sequence
from .tokenizer import IncrementalDetokenizer, Tokenizer

log = logging.getLogger("llmfleet.engine")


@dataclass
class RequestOutput:
    request_id: str
    new_token_ids: list[int]
    text_delta: str
    finished: bool
    finish_reason: str | None
    num_prompt_tokens: int
    num_output_tokens: int
    num_cached_tokens: int
    error: str | None = None  # this request failed inside the step (finish_reason "error"); others go on


class _Track:
    """Per-request text state: detokenizer plus stop-string hold-back."""

    def __init__(self, seq: Sequence, tokenizer: Tokenizer):
        self.seq = seq
        self.detok = IncrementalDetokenizer(tokenizer)
        self.emitted = 0  # characters of detok.text already released
        self.hold = max((len(s) for s in seq.params.stop), default=1) - 1


class LLMEngine:
    def __init__(self, config: EngineConfig, compile_now: bool = True):
        """compile_now=False leaves the decode step eager until `compile()` is called (the server
        calls it after turning ready, in the background, on CPU)."""
        self.config = config
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        model_dir = resolve_model_path(config.model)
        self.model_dir = model_dir
        self.tokenizer = Tokenizer(model_dir)
        self.runner = ModelRunner(model_dir, config.device, config.dtype, config.block_size, config.max_model_len,
                                  config.kv_cache_memory_mb, config.num_kv_blocks, config.max_num_seqs,
                                  pathlib.Path(config.compile_cache_dir) if config.compile_cache_dir else None,
                                  config.cpu_kernels)
        self.max_model_len = self.runner.max_model_len
        self.compile_seconds = 0.0
        if config.compile_enabled(self.runner.device.type) and compile_now:
            self.compile(fallback=False)
        self.eos_token_ids = list(self.runner.cfg.eos_token_ids)
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in self.eos_token_ids:
            self.eos_token_ids.append(self.tokenizer.eos_token_id)
        self.blocks = BlockManager(self.runner.num_blocks, config.block_size, config.enable_prefix_caching)
        self.scheduler = Scheduler(self.blocks, config.max_num_seqs, config.max_num_batched_tokens)
        self._tracks: dict[str, _Track] = {}
        self.served_model_name = config.served_model_name or model_dir.name

    @property
    def compiled(self) -> bool:
        return self.runner.decoder is not None

    def compile(self, fallback: bool = True) -> bool:
        """Compile (CPU) or capture (CUDA) the decode step. Safe to call from another thread while
        steps run: warm-up writes only the scratch block, and steps switch over when it is done.
        With fallback, a failure (no C++ compiler in the image, say) is logged and decoding stays eager."""
        cfg = self.config
        cache = pathlib.Path(cfg.compile_cache_dir) if cfg.compile_cache_dir else default_cache_dir()
        try:
            self.compile_seconds = self.runner.enable_compiled_decode(cache)
        except Exception as e:
            if not fallback:
                raise
            log.warning("decode step not compiled; decoding stays eager", extra={"error": f"{type(e).__name__}: {e}"})
            return False
        return True

    # -- requests ------------------------------------------------------------------------------
    def check_lengths(self, num_prompt_tokens: int, params: SamplingParams) -> None:
        if num_prompt_tokens == 0:
            raise InvalidRequest("the prompt is empty", param="prompt")
        if num_prompt_tokens >= self.max_model_len:
            raise InvalidRequest(
                f"This model's maximum context length is {self.max_model_len} tokens; the prompt has "
                f"{num_prompt_tokens} tokens, leaving no room for output.", param="prompt",
                code="context_length_exceeded")
        if num_prompt_tokens + params.max_tokens > self.max_model_len:
            raise InvalidRequest(
                f"This model's maximum context length is {self.max_model_len} tokens; the prompt has "
                f"{num_prompt_tokens} tokens and max_tokens is {params.max_tokens}. Lower max_tokens or "
                f"shorten the prompt.", param="max_tokens", code="context_length_exceeded")

    def add_request(self, request_id: str, prompt_token_ids: list[int], params: SamplingParams,
                    arrival_time: float | None = None) -> Sequence:
        self.check_lengths(len(prompt_token_ids), params)
        vocab = self.runner.cfg.vocab_size
        if any(t < 0 or t >= vocab for t in prompt_token_ids):
            raise InvalidRequest(f"prompt token ids must be in [0, {vocab})", param="prompt")
        if request_id in self._tracks:
            raise InvalidRequest(f"duplicate request id {request_id}")
        seq = Sequence(request_id, prompt_token_ids, params, arrival_time)
        self._tracks[request_id] = _Track(seq, self.tokenizer)
        self.scheduler.add(seq)
        return seq

    def abort(self, request_id: str) -> bool:
        track = self._tracks.pop(request_id, None)
        if track is None:
            return False
        self.scheduler.abort(track.seq)
        return True

    @property
    def has_work(self) -> bool:
        return self.scheduler.has_work

    @property
    def num_waiting(self) -> int:
        return len(self.scheduler.waiting)

    @property
    def num_running(self) -> int:
        return len(self.scheduler.running)

    # -- the step --------------------------------------------------------------------------------
    @torch.inference_mode()
    def step(self) -> list[RequestOutput]:
        plan = self.scheduler.schedule()
        if not plan:
            return []
        sampled, logits = self.runner.run(plan)
        self.scheduler.on_step_done(plan)
        outputs = []
        if sampled:
            tokens = sample(sampled, logits, self.eos_token_ids, self.config.seed)
            now = time.monotonic()
            for seq, token in zip(sampled, tokens, strict=True):
                if isinstance(token, Exception):
                    outputs.append(self._fail(seq, token))
                    continue
                if seq.first_token_time is None:
                    seq.first_token_time = now
                seq.token_ids.append(token)
                outputs.append(self._process_token(seq, token))
        return outputs

    def _fail(self, seq: Sequence, err: Exception) -> RequestOutput:
        """One sequence could not be sampled: finish it alone, with the reason, and free its blocks."""
        log.error("sampling failed; failing this request only", extra={"request_id": seq.request_id,
                                                                      "error": str(err)})
        self.scheduler.finish(seq, "error")
        self._tracks.pop(seq.request_id, None)
        return RequestOutput(seq.request_id, [], "", True, "error", seq.num_prompt_tokens, seq.num_output_tokens,
                             seq.num_cached_tokens, error=f"sampling failed: {err}")

    def _process_token(self, seq: Sequence, token: int) -> RequestOutput:
        track = self._tracks[seq.request_id]
        p = seq.params
        track.detok.add(token)
        text = track.detok.text
        reason = None
        cut = len(text)
        if seq.num_output_tokens >= p.min_tokens:
            if not p.ignore_eos and token in self.eos_token_ids:
                reason = "stop"
            elif token in p.stop_token_ids:
                reason = "stop"
            elif p.stop:
                start = max(0, track.emitted - track.hold)
                hits = [i for i in (text.find(s, start) for s in p.stop) if i >= 0]
                if hits:
                    reason, cut = "stop", min(hits)
        if reason is None and (seq.num_output_tokens >= p.max_tokens or len(seq) >= self.max_model_len):
            reason = "length"
        if reason is None:
            cut = max(track.emitted, len(text) - track.hold) if p.stop else len(text)
        delta = text[track.emitted:cut]
        track.emitted = max(track.emitted, cut)
        if reason is not None:
            self.scheduler.finish(seq, reason)
            del self._tracks[seq.request_id]
        return RequestOutput(seq.request_id, [token], delta, reason is not None, reason, seq.num_prompt_tokens,
                             seq.num_output_tokens, seq.num_cached_tokens)

    # -- offline helper (tests, benchmarks) ---------------------------------------------------------
    def generate(self, prompts: list[list[int]], params: SamplingParams | list[SamplingParams]) -> list[list[int]]:
        """Run prompts to completion; return the generated token ids of each, in order."""
        plist = params if isinstance(params, list) else [params] * len(prompts)
        ids = [f"gen-{i}-{time.monotonic_ns()}" for i in range(len(prompts))]
        for rid, prompt, p in zip(ids, prompts, plist, strict=True):
            self.add_request(rid, prompt, p)
        result: dict[str, list[int]] = {rid: [] for rid in ids}
        while self.has_work:
            for out in self.step():
                result[out.request_id].extend(out.new_token_ids)
        return [result[rid] for rid in ids]

