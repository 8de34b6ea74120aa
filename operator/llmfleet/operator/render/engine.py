"""How each engine kind is started, probed and stopped: command, args, env, probes, preStop.

| engine kind | start                                    | ready      | stop (preStop, then SIGTERM)                     |
| ----------- | ---------------------------------------- | ---------- | ------------------------------------------------ |
| embedded    | llmfleet-engine serve ...                | GET /ready | `llmfleet-engine drain` (POST /drain with the drain token, wait grace) |
| vllm        | python3 -m vllm.entrypoints.openai.api_server | GET /health | sleep grace (vLLM has no drain endpoint, no drain token) |

Shutdown budget: the preStop hook takes drainGraceSeconds, then the engine gets SIGTERM
and has drainTimeoutSeconds (--shutdown-timeout) to finish in-flight requests, so
terminationGracePeriodSeconds = grace + timeout + SHUTDOWN_SLACK_SECONDS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from llmfleet.operator.api.llmservice import LLMService, LLMServiceSpec

from .paths import API_KEY_FILE, CACHE_DIR, DRAIN_TOKEN_FILE, HF_HOME, HTTP_PORT, HTTP_PORT_NAME, TMP_DIR

# Time for process exit and kubelet bookkeeping after the engine's own shutdown timeout.
SHUTDOWN_SLACK_SECONDS = 10
# The engine answers /health within seconds of starting (before the weights load), so a short
# period lets the pod turn Ready as soon as /ready does instead of at the next 10 s probe.
STARTUP_PROBE_PERIOD_SECONDS = 2
READINESS_PERIOD_SECONDS = 1  # a drain is seen by the endpoints within ~2 s (2 misses)
# A drain that no SIGTERM follows this long after its grace is undone by the engine. The preStop
# hook's SIGTERM comes right after the grace; the operator's spot drain re-POSTs while it still
# drains (spot/drain.py), so this only ends drains nobody followed up.
DRAIN_EXPIRY_AFTER_GRACE_SECONDS = 120


@dataclass(frozen=True)
class EngineProcess:
    """The kind-specific part of the engine container."""

    command: list[str]
    args: list[str]
    env: list[dict[str, Any]]
    readiness_path: str
    pre_stop: dict[str, Any]


def served_model_name(service: LLMService) -> str:
    """The name clients request; the LLMService name unless spec.model.servedName is set."""
    return service.spec.model.served_name or service.metadata.name


def termination_grace_seconds(spec: LLMServiceSpec) -> int:
    return spec.drain_grace_seconds + spec.drain_timeout_seconds + SHUTDOWN_SLACK_SECONDS


def _tuning_args(spec: LLMServiceSpec) -> list[str]:
    """Flags both engines spell the same way (vLLM's names)."""
    engine = spec.engine
    args: list[str] = []
    for flag, value in (
        ("--dtype", engine.dtype),
        ("--max-num-seqs", engine.max_num_seqs),
        ("--block-size", engine.block_size),
        ("--max-model-len", engine.max_model_len),
    ):
        if value is not None:
            args += [flag, str(value)]
    return args


def _common_env() -> list[dict[str, Any]]:
    """Point every cache at the writable volumes: the root filesystem is read-only."""
    return [
        {"name": "HOME", "value": TMP_DIR},
        {"name": "XDG_CACHE_HOME", "value": CACHE_DIR},
        {"name": "HF_HOME", "value": HF_HOME},
    ]


def embedded_process(service: LLMService, model_path: str) -> EngineProcess:
    spec = service.spec
    # No --host: a pod binds all addresses of its own network namespace by default.
    args = ["--model", model_path, "--port", str(HTTP_PORT), "--served-model-name", served_model_name(service)]
    if spec.engine.device is not None:
        args += ["--device", spec.engine.device]
    args += _tuning_args(spec)
    if spec.api_key_secret_ref is not None:
        args += ["--api-key-file", API_KEY_FILE]
    args += [
        "--drain-grace-seconds", str(spec.drain_grace_seconds),
        "--drain-expiry-seconds", str(spec.drain_grace_seconds + DRAIN_EXPIRY_AFTER_GRACE_SECONDS),
        "--drain-token-file", DRAIN_TOKEN_FILE,
        "--shutdown-timeout", str(spec.drain_timeout_seconds),
    ]
    args += spec.engine.extra_args
    drain = ["llmfleet-engine", "drain", "--port", str(HTTP_PORT), "--wait-seconds", str(spec.drain_grace_seconds),
             "--token-file", DRAIN_TOKEN_FILE]
    return EngineProcess(
        command=["llmfleet-engine", "serve"],
        args=args,
        env=_common_env(),
        readiness_path="/ready",
        pre_stop={"exec": {"command": drain}},
    )


def vllm_process(service: LLMService, model_path: str) -> EngineProcess:
    spec = service.spec
    args = ["--model", model_path, "--port", str(HTTP_PORT), "--served-model-name", served_model_name(service)]
    args += _tuning_args(spec)
    args += spec.engine.extra_args
    env = _common_env() + [{"name": "VLLM_NO_USAGE_STATS", "value": "1"}]
    if spec.api_key_secret_ref is not None:
        # vLLM reads VLLM_API_KEY when --api-key is absent: the key stays out of the process list.
        ref = spec.api_key_secret_ref
        env.append({"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    return EngineProcess(
        command=["python3", "-m", "vllm.entrypoints.openai.api_server"],
        args=args,
        env=env,
        readiness_path="/health",
        pre_stop={"exec": {"command": ["sleep", str(spec.drain_grace_seconds)]}},
    )


def engine_process(service: LLMService, model_path: str) -> EngineProcess:
    if service.spec.engine.kind == "vllm":
        return vllm_process(service, model_path)
    return embedded_process(service, model_path)


def probes(spec: LLMServiceSpec, readiness_path: str) -> dict[str, Any]:
    """startupProbe (the model-load budget), then readiness and liveness.

    Readiness is polled every second and fails after 2 misses, so a drained engine (/ready →
    503 at once) leaves the endpoints within ~2 s, well inside the default 5 s drain grace that
    also covers the EndpointSlice and the proxies; a single slow answer (timeout 2 s) does not
    take a busy pod out. (Every 2 s it took 3-4 s on the bed, on the edge of the grace.)
    """

    def http(path: str) -> dict[str, Any]:
        return {"path": path, "port": HTTP_PORT_NAME}

    return {
        "startupProbe": {
            "httpGet": http("/health"),
            "periodSeconds": STARTUP_PROBE_PERIOD_SECONDS,
            "timeoutSeconds": 5,
            "failureThreshold": math.ceil(spec.engine.startup_timeout_seconds / STARTUP_PROBE_PERIOD_SECONDS),
        },
        "readinessProbe": {
            "httpGet": http(readiness_path),
            "periodSeconds": READINESS_PERIOD_SECONDS,
            "timeoutSeconds": 2,
            "failureThreshold": 2,
            "successThreshold": 1,
        },
        "livenessProbe": {
            "httpGet": http("/health"),
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
    }
