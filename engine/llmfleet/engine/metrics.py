"""Prometheus metrics of one engine process.

The llmfleet_engine_* names are a contract: the operator's autoscaler reads
requests_waiting (queue depth), requests_running and kv_cache_usage_ratio, the
chart's dashboard and alerts read the rest. The same gauges are also exported
under the Gateway API Inference Extension's model-server names (vllm:*), so
inference gateways can route to llmfleet pods unchanged.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

P = "llmfleet_engine_"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)
TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2.5)


class EngineMetrics:
    def __init__(self, model_name: str = ""):
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.waiting = Gauge(P + "requests_waiting", "Requests queued, not yet scheduled (the queue depth).",
                             registry=r)
        self.running = Gauge(P + "requests_running", "Requests being prefilled or decoded.", registry=r)
        self.draining = Gauge(P + "draining", "1 while the engine is draining or shutting down.", registry=r)
        self.kv_usage = Gauge(P + "kv_cache_usage_ratio", "Fraction of KV-cache blocks held by requests.",
                              registry=r)
        self.ready = Gauge(P + "ready", "1 when the model is loaded and the engine admits requests.", registry=r)
        self.model_load_seconds = Gauge(P + "model_load_seconds", "Seconds from process start to model loaded.",
                                        registry=r)
        self.ttft = Histogram(P + "time_to_first_token_seconds", "Arrival to first output token.",
                              buckets=LATENCY_BUCKETS, registry=r)
        self.tpot = Histogram(P + "time_per_output_token_seconds", "Mean time between output tokens, per request.",
                              buckets=TPOT_BUCKETS, registry=r)
        self.e2e = Histogram(P + "e2e_request_latency_seconds", "Arrival to finish.", buckets=LATENCY_BUCKETS,
                             registry=r)
        self.drains_expired = Counter(P + "drains_expired", "Drains undone because no SIGTERM followed in time.",
                                      registry=r)
        self.prompt_tokens = Counter(P + "prompt_tokens", "Prompt tokens of admitted requests.", registry=r)
        self.generation_tokens = Counter(P + "generation_tokens", "Generated tokens.", registry=r)
        self.finished = Counter(P + "requests_finished", "Finished requests by finish reason.", ["finish_reason"],
                                registry=r)
        self.rejected = Counter(P + "requests_rejected", "Rejected requests by reason.", ["reason"], registry=r)
        self.prefix_queries = Counter(P + "prefix_cache_queries", "Prompt tokens looked up in the prefix cache.",
                                      registry=r)
        self.prefix_hits = Counter(P + "prefix_cache_hits", "Prompt tokens found in the prefix cache.", registry=r)
        self.preemptions = Counter(P + "preemptions", "Sequences preempted (recomputed later) for lack of KV blocks.",
                                   registry=r)
        self.gpu_utilization = Gauge(P + "gpu_utilization_ratio", "GPU utilisation (NVML).", ["gpu"], registry=r)
        self.gpu_memory_used = Gauge(P + "gpu_memory_used_bytes", "GPU memory used (NVML).", ["gpu"], registry=r)
        self.gpu_temperature = Gauge(P + "gpu_temperature_celsius", "GPU temperature (NVML).", ["gpu"], registry=r)
        # Gateway API Inference Extension model-server protocol names.
        self.gie_waiting = Gauge("vllm:num_requests_waiting", "Requests waiting (inference-gateway protocol).",
                                 registry=r)
        self.gie_running = Gauge("vllm:num_requests_running", "Requests running (inference-gateway protocol).",
                                 registry=r)
        self.gie_kv = Gauge("vllm:kv_cache_usage_perc", "KV-cache usage in [0, 1] (inference-gateway protocol).",
                            registry=r)
        self.gie_cache_info = Gauge("vllm:cache_config_info", "KV-cache configuration.",
                                    ["block_size", "num_gpu_blocks"], registry=r)
        for c in (self.finished,):
            for reason in ("stop", "length", "abort"):
                c.labels(finish_reason=reason)

    def set_cache_config(self, block_size: int, num_blocks: int) -> None:
        self.gie_cache_info.labels(block_size=str(block_size), num_gpu_blocks=str(num_blocks)).set(1)

    def set_load(self, waiting: int, running: int, kv_usage: float) -> None:
        self.waiting.set(waiting)
        self.running.set(running)
        self.kv_usage.set(kv_usage)
        self.gie_waiting.set(waiting)
        self.gie_running.set(running)
        self.gie_kv.set(kv_usage)

    def render(self) -> bytes:
        return generate_latest(self.registry)
