"""Every router setting in one place, with the reason for its default (the CLI flags mirror it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RouterConfig:
    host: str = ""  # empty: $POD_IP when set (the chart sets it), else 0.0.0.0
    port: int = 8080  # the OpenAI API (/v1/...) and the probes: what the Service publishes
    # /metrics and /demand (the operator's long poll), and the probes: a port the Service does not
    # publish. Both name the namespaces and services the router serves, which /v1/models keeps to
    # the caller's own; whoever reaches the API (through an Ingress, say) must not learn them.
    # Prometheus and the operator reach this port on the pod IPs.
    admin_port: int = 9090
    # Namespaces whose LLMServices are served; empty means every namespace (needs cluster-wide RBAC).
    namespaces: tuple[str, ...] = ()

    # --- requests -------------------------------------------------------------------------------
    # Checked against Content-Length before reading and while reading: the engine caps at 8 MiB too.
    max_body_bytes: int = 8 * 2**20
    # The whole body must arrive within this many seconds of the request's start (not per read), or
    # 408: a client trickling a byte at a time would otherwise hold a connection and its buffer for
    # ever, and every tenant shares the router. The engine's --body-read-timeout is the same 30 s.
    body_read_timeout_seconds: float = 30.0
    # Open connections at most (idle, held and streaming ones all count); beyond, uvicorn answers
    # 503 at once. Bounds the sockets and memory one flood of clients can take from everyone.
    max_connections: int = 8192
    # Header carrying a session id; requests with the same id go to the same replica (load permitting).
    session_header: str = "x-session-id"

    # --- picking a replica ------------------------------------------------------------------------
    # Bounded-load factor c of consistent hashing with bounded loads: a replica takes a key's request
    # while its load stays under c x the average. 1.25 keeps most requests on their prefix's replica
    # and still caps a hot prefix at 25 % above the mean (the value KubeAI and Vimeo's HAProxy use).
    load_factor: float = 1.25
    # How much of the prompt keys the hash: chat keys on its leading system message(s) (else the
    # first message), completions on the prompt's start; both cut to this many characters. Long
    # enough to tell tenants' system prompts apart, short enough that a conversation's own later
    # turns do not change the key.
    prefix_chars: int = 2048
    # A replica with this share of its KV cache in use is passed over by the hash walk (it would
    # preempt or queue); it still takes requests when every replica is that full.
    kv_saturation: float = 0.95

    # --- load signals -----------------------------------------------------------------------------
    # Engines' /metrics are read this often. Between two reads the router adds its own in-flight
    # change to the last reading, so the interval only bounds how stale other routers' traffic and
    # finished requests are: a second is a handful of requests at the engine's rates, for one
    # ~5 KB response per engine per second.
    metrics_interval_seconds: float = 1.0
    metrics_timeout_seconds: float = 0.5

    # --- retries and timeouts ---------------------------------------------------------------------
    # A request refused with 503 or a connection error before any byte reached the client is tried
    # on another replica: at most this many attempts in all, within the deadline below.
    max_attempts: int = 5
    retry_deadline_seconds: float = 30.0
    # A replica that refused or failed is skipped by this router for this long (drains and crashes
    # reach the router's watch a moment later; the engine's Retry-After is usually 1 s).
    failure_cooldown_seconds: float = 2.0
    connect_timeout_seconds: float = 2.0
    # A non-streamed response arrives whole, after generation: this bounds a replica that hangs.
    response_timeout_seconds: float = 600.0
    # A stream that sends nothing for this long (not even a chunk) is cut: the replica hangs.
    stream_idle_timeout_seconds: float = 120.0
    # Cap on a buffered (non-streamed) upstream answer.
    max_response_bytes: int = 32 * 2**20

    # --- holding requests (no ready replica: starting, or scaled to zero) -------------------------
    # How long a request waits for a ready replica before 503 + Retry-After. A cold start loads a
    # model, which takes tens of seconds to minutes.
    hold_timeout_seconds: float = 300.0
    # Held requests per service at most; beyond, 503 at once (memory and fairness bound).
    max_held_per_service: int = 256

    # --- API keys -------------------------------------------------------------------------------
    # A service's key Secret is read again this often (rotation), and at once when the service changes.
    key_refresh_seconds: float = 60.0
