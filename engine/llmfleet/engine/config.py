"""Engine configuration: one dataclass, one place for every knob and why it has its default.

The CLI (`llmfleet-engine serve`) is generated from these fields, so a flag, its
default and its help text never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields


def _opt(default, help: str, flag: str | None = None, **kw):
    return field(default=default, metadata={"help": help, "flag": flag, **kw})


@dataclass
class EngineConfig:
    model: str = _opt("", "Model directory, file:// path or hf://org/name (Hugging Face layout).")
    served_model_name: str | None = _opt(None, "Name clients use in `model`; defaults to the directory name.")
    host: str | None = _opt(
        None, "Bind address. Default: $LLMFLEET_ENGINE_HOST, else 0.0.0.0 (all addresses, as in a pod).")
    port: int = _opt(8000, "HTTP port.")
    device: str = _opt("auto", "auto (cuda when available, else cpu), cpu or cuda.", choices=["auto", "cpu", "cuda"])
    dtype: str = _opt(
        "auto", "auto: bfloat16 on CUDA; on CPU bfloat16 where the CPU has native bf16 matrix instructions "
                "(AMX or AVX-512 BF16), else float32 (emulated bf16 is slower). The choice is logged at start-up.",
        choices=["auto", "float32", "bfloat16", "float16"])
    compile: bool | None = _opt(
        None, "Compile the decode step (CPU: torch.compile/inductor; CUDA: CUDA graphs per batch-size bucket). "
              "Default: on for CUDA, off for CPU, where compiling costs 30-90 s of CPU at every cold start and "
              "measured only 1.05-1.1x on decode (docs/benchmarks.md). --compile / --no-compile force it.")
    compile_wait: bool = _opt(
        False, "Finish compiling before /ready. Default: on CPU, serve eagerly at once and switch to the "
               "compiled step when it is ready (compiling on a small CPU takes a minute or more); CUDA graphs "
               "are always captured before /ready.")
    compile_cache_dir: str | None = _opt(
        None, "Where compiled artefacts are kept and reused by restarts and replicas; default "
              "$XDG_CACHE_HOME/llmfleet/compile (the pod's cache volume), else ~/.cache/llmfleet/compile.")
    cpu_kernels: bool = _opt(
        True, "On CPU, run a lone decode (batch 1) in C kernels built at start-up for this CPU (one call per "
              "layer; about a second of compiling, cached with the compile artefacts; needs a C compiler, else "
              "logged and skipped). Keeps a plain copy of each weight beside oneDNN's packed one (twice the "
              "weights' memory): --no-cpu-kernels to save it.")
    threads: int = _opt(
        0, "CPU threads for torch; 0 keeps torch's default. Oversubscribed threads collapse throughput "
           "on small machines, so set it to the cores the pod really has.")
    max_num_seqs: int = _opt(64, "Most sequences decoded together in one step (the running batch).")
    max_num_batched_tokens: int = _opt(
        256, "Per-step token budget. Long prompts are prefilled in chunks of at most this many tokens, "
             "so running decodes are not stalled behind them (chunked prefill).")
    block_size: int = _opt(16, "Tokens per KV-cache block.")
    max_model_len: int | None = _opt(
        None, "Longest prompt + output in tokens; defaults to the model's max_position_embeddings (capped at 4096).")
    kv_cache_memory_mb: int = _opt(
        0, "Memory for the KV-cache block pool in MiB; 0 = a default budget (CPU: 512 MiB; CUDA: 90% of free "
           "memory after weights).")
    num_kv_blocks: int = _opt(0, "Exact number of KV blocks (overrides the memory budget; for tests).")
    enable_prefix_caching: bool = _opt(True, "Share full KV blocks between requests with the same prefix.")
    max_waiting: int = _opt(256, "Bound of the waiting queue; beyond it requests get 503 with Retry-After.")
    max_stop_sequences: int = _opt(16, "Most stop strings a request may carry.")
    api_key_file: str | None = _opt(None, "File with one accepted API key per line; clients send "
                                          "`Authorization: Bearer <key>`. Unset: no authentication.")
    drain_token_file: str | None = _opt(
        None, "File holding the drain token: POST /drain needs `Authorization: Bearer <token>`. The operator "
              "mounts a per-service Secret here; unset: /drain answers 403 (SIGTERM still drains).")
    max_body_bytes: int = _opt(8 * 2**20, "Largest request body; a larger Content-Length is refused before "
                                          "reading, a chunked body is cut off at this size (413).")
    body_read_timeout: float = _opt(
        30.0, "Seconds a client has to send its whole request body (408 after), so slow senders cannot hold "
              "connections and memory.")
    max_concurrent_requests: int = _opt(
        1024, "Most HTTP requests handled at once (streams included); beyond it /v1 requests get 503 at once. "
              "Probes, /metrics and /drain are never refused.")
    rate_limit_tokens_per_minute: int = _opt(
        0, "Per-API-key token bucket (prompt + max output tokens) refilled per minute; 0 = no limit.")
    drain_grace_seconds: float = _opt(
        5.0, "After POST /drain, keep admitting for this long (load balancers learn of endpoint changes late), "
             "then answer new requests with 503.")
    drain_expiry_seconds: float = _opt(
        120.0, "A drain that no SIGTERM follows within this long after the last POST /drain is undone: the "
               "engine turns ready and admits again (logged, llmfleet_engine_drains_expired_total). "
               "Must exceed --drain-grace-seconds.")
    shutdown_timeout: float = _opt(
        60.0, "On SIGTERM, wait at most this long for in-flight requests before exiting.")
    seed: int = _opt(0, "Seed for requests that do not give one.")
    log_level: str = _opt("info", "Log level.", choices=["debug", "info", "warning", "error"])

    def __post_init__(self) -> None:
        if self.drain_expiry_seconds <= self.drain_grace_seconds:
            raise ValueError(f"--drain-expiry-seconds ({self.drain_expiry_seconds}) must exceed "
                             f"--drain-grace-seconds ({self.drain_grace_seconds})")
        for name in ("max_body_bytes", "body_read_timeout", "max_concurrent_requests"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive")

    def compile_enabled(self, device_type: str) -> bool:
        """--compile as given, else the default for the device (see the `compile` field)."""
        return self.compile if self.compile is not None else device_type == "cuda"

    @classmethod
    def option_fields(cls):
        return fields(cls)
