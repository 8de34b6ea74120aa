"""The Gateway API Inference Extension InferencePool over an LLMService's engine pods.

An inference gateway (Envoy Gateway, Istio, GKE, kgateway with the extension installed)
routes an HTTPRoute whose backendRef is this pool to one of its pods, asking the pool's
endpoint picker which. The picker reads the engines' model-server protocol metrics
(`vllm:num_requests_waiting`, `vllm:kv_cache_usage_perc`, ...), which llmfleet's engine exports.

| field                     | value                                                   |
| ------------------------- | ------------------------------------------------------- |
| name                      | the LLMService's (as its Service and PDB)               |
| selector.matchLabels      | every engine pod of the service, spot and on-demand     |
| targetPorts               | the engine's HTTP port (8000), not the Service's 80     |
| endpointPickerRef         | spec.inferencePool.endpointPickerRef, copied as written |
"""

from __future__ import annotations

from typing import Any

from llmfleet.operator.api.llmservice import LLMService

from .labels import object_meta, selector_labels
from .paths import HTTP_PORT

INFERENCE_POOL_API_VERSION = "inference.networking.k8s.io/v1"
INFERENCE_POOL_CRD = "inferencepools.inference.networking.k8s.io"


def wants_inference_pool(service: LLMService) -> bool:
    pool = service.spec.inference_pool
    return pool is not None and pool.enabled


def render_inference_pool(service: LLMService) -> dict[str, Any]:
    name = service.metadata.name
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(name)},
        "targetPorts": [{"number": HTTP_PORT}],
        "appProtocol": "http",
    }
    pool = service.spec.inference_pool
    if pool is not None and pool.endpoint_picker_ref is not None:
        spec["endpointPickerRef"] = pool.endpoint_picker_ref.to_wire()
    return {
        "apiVersion": INFERENCE_POOL_API_VERSION,
        "kind": "InferencePool",
        "metadata": object_meta(service, name),
        "spec": spec,
    }
