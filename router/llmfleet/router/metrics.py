"""The router's own metrics (prefix `llmfleet_router_`), on a registry of its own.

`llmfleet_router_requests_held{namespace,service,model}` is also the operator's demand signal
for a service with no ready replica (scale from zero): requests a router is holding.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class RouterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("llmfleet_router_requests", "Requests answered, by model and HTTP status.",
                                ["model", "code"], registry=r)
        self.latency = Histogram("llmfleet_router_request_duration_seconds",
                                 "Time from the request to the last byte of the answer.", ["model"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.first_byte = Histogram("llmfleet_router_time_to_first_byte_seconds",
                                    "Time from the request to the first byte of the answer (holds and retries "
                                    "included).", ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.retries = Counter("llmfleet_router_retries", "Requests sent again to another replica, by why.",
                               ["model", "reason"], registry=r)
        self.decisions = Counter("llmfleet_router_routing_decisions",
                                 "First-attempt replica choices: prefix/affinity (the key's replica), overflow "
                                 "(bounded load moved it on), load (least loaded).", ["model", "reason"], registry=r)
        self.held = Gauge("llmfleet_router_requests_held",
                          "Requests held because their service has no ready replica.",
                          ["namespace", "service", "model"], registry=r)
        self.hold_timeouts = Counter("llmfleet_router_hold_timeouts",
                                     "Held requests answered 503 (no replica in time, or the hold queue full).",
                                     ["model"], registry=r)
        self.disconnects = Counter("llmfleet_router_client_disconnects",
                                   "Clients gone before their answer ended (the upstream request is aborted).",
                                   ["model"], registry=r)
        self.replicas = Gauge("llmfleet_router_replicas_in_rotation", "Replicas taking new requests.",
                              ["namespace", "service", "model"], registry=r)
        self.scrape_errors = Counter("llmfleet_router_metrics_scrape_errors",
                                     "Engine /metrics reads that failed.", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
