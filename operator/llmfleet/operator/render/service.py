"""The ClusterIP Service in front of all engine pods of an LLMService (both capacities).

Port 80 → the pods' `http` port. Not-ready pods are left out (publishNotReadyAddresses
false): a draining engine turns not-ready first, and leaves the endpoints before it refuses.
"""

from __future__ import annotations

from typing import Any

from llmfleet.operator.api.llmservice import LLMService

from .labels import object_meta, selector_labels
from .paths import HTTP_PORT_NAME

SERVICE_PORT = 80


def render_service(service: LLMService) -> dict[str, Any]:
    name = service.metadata.name
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(service, name),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(name),
            "ports": [
                {
                    "name": HTTP_PORT_NAME,
                    "port": SERVICE_PORT,
                    "targetPort": HTTP_PORT_NAME,
                    "protocol": "TCP",
                    "appProtocol": "http",
                }
            ],
            "publishNotReadyAddresses": False,
        },
    }
