"""The operator's own Prometheus metrics, on a registry of its own, served on /metrics (port 8080).

The names are a contract with the chart's dashboard and alert rules (charts/llmfleet):

| metric                                         | type      | labels            |
| ---------------------------------------------- | --------- | ----------------- |
| llmfleet_operator_reconciles_total             | counter   | kind, result (success, error) |
| llmfleet_operator_reconcile_duration_seconds   | histogram | kind              |
| llmfleet_operator_managed_services             | gauge     |                   |
| llmfleet_operator_scale_decisions_total        | counter   | direction (up, down) |
| llmfleet_operator_desired_replicas             | gauge     | service, service_namespace |
| llmfleet_operator_cost_per_hour                | gauge     | service, service_namespace |
| llmfleet_operator_drains_total                 | counter   | (the spot handlers count drains) |
| llmfleet_operator_api_requests_total           | counter   | verb (get, list, apply, patch, delete, evict) |

Per-service series name the LLMService in `service` (the alert rules join on it).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

PREFIX = "llmfleet_operator_"
METRICS_PORT = 8080

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    PREFIX + "reconciles",
    "Reconciliations by object kind and result.",
    ["kind", "result"],
    registry=REGISTRY,
)
RECONCILE_DURATION = Histogram(
    PREFIX + "reconcile_duration_seconds",
    "Duration of one reconciliation (apply, observe, scrape, decide, write status).",
    ["kind"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
MANAGED_SERVICES = Gauge(PREFIX + "managed_services", "LLMServices this operator manages.", registry=REGISTRY)
SCALE_DECISIONS = Counter(
    PREFIX + "scale_decisions", "Applied autoscaler decisions by direction.", ["direction"], registry=REGISTRY
)
DESIRED_REPLICAS = Gauge(
    PREFIX + "desired_replicas",
    "Replica count the operator converges each LLMService to.",
    ["service", "service_namespace"],
    registry=REGISTRY,
)
COST_PER_HOUR = Gauge(
    PREFIX + "cost_per_hour",
    "Cost per hour of each LLMService's ready replicas (spec.pricing currency).",
    ["service", "service_namespace"],
    registry=REGISTRY,
)
DRAINS = Counter(PREFIX + "drains", "Engine pods drained off reclaimed spot nodes.", registry=REGISTRY)
API_REQUESTS = Counter(
    PREFIX + "api_requests",
    "Kubernetes API requests made by the reconciler (kopf's own watches and patches not included).",
    ["verb"],
    registry=REGISTRY,
)

for _kind in ("LLMService", "AutoscalePolicy"):
    for _result in ("success", "error"):
        RECONCILES.labels(kind=_kind, result=_result)
for _direction in ("up", "down"):
    SCALE_DECISIONS.labels(direction=_direction)


def forget_service(namespace: str, name: str) -> None:
    """Drop a deleted LLMService's series, so dashboards do not show it forever."""
    for gauge in (DESIRED_REPLICAS, COST_PER_HOUR):
        try:
            gauge.remove(name, namespace)
        except KeyError:
            pass


def serve(address: str, port: int = METRICS_PORT) -> None:
    """Start the /metrics HTTP server in a background thread."""
    start_http_server(port, addr=address, registry=REGISTRY)
