"""Names, labels, selectors and owner references of the objects generated for an LLMService.

| object                 | name               | selects / selected by                          |
| ---------------------- | ------------------ | ---------------------------------------------- |
| Service, PDB           | <name>             | all engine pods of the service                 |
| Deployment (no pool)   | <name>             | pods with capacity `any`                       |
| Deployment (pool)      | <name>-ondemand, <name>-spot | pods with that capacity label        |

Deployment selectors include the capacity label so the two Deployments of a pooled
service never select each other's pods; the Service, the PDB and status.selector omit
it so they span both.
"""

from __future__ import annotations

from typing import Any

from llmfleet.operator.api.llmservice import LLMService
from llmfleet.operator.api.resource import API_VERSION

from .context import Capacity

NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
SERVICE_LABEL = "llmfleet.dev/service"
CAPACITY_LABEL = "llmfleet.dev/capacity"

ENGINE_APP = "llmfleet-engine"
MANAGER = "llmfleet-operator"


def selector_labels(name: str) -> dict[str, str]:
    """Labels every engine pod of service `name` carries, whatever its Deployment."""
    return {NAME_LABEL: ENGINE_APP, INSTANCE_LABEL: name, SERVICE_LABEL: name}


def selector_string(name: str) -> str:
    """status.selector: the same selector in label-selector string form (for the scale subresource)."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(name).items()))


def deployment_selector(name: str, capacity: Capacity) -> dict[str, str]:
    return {**selector_labels(name), CAPACITY_LABEL: capacity}


def object_labels(name: str) -> dict[str, str]:
    """Labels on the generated objects themselves."""
    return {**selector_labels(name), MANAGED_BY_LABEL: MANAGER}


def deployment_name(name: str, capacity: Capacity) -> str:
    return name if capacity == "any" else f"{name}-{capacity}"


def owner_reference(service: LLMService) -> dict[str, Any]:
    """Makes the LLMService the controller of a child, so deleting it garbage-collects the child."""
    return {
        "apiVersion": API_VERSION,
        "kind": "LLMService",
        "name": service.metadata.name,
        "uid": service.metadata.uid or "",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def object_meta(service: LLMService, name: str) -> dict[str, Any]:
    """metadata of a child object: same namespace, managed-by labels, owner reference."""
    return {
        "name": name,
        "namespace": service.metadata.namespace,
        "labels": object_labels(service.metadata.name),
        "ownerReferences": [owner_reference(service)],
    }


def endpoint_url(name: str, namespace: str) -> str:
    """status.endpoint: the in-cluster OpenAI base URL (the Service listens on port 80)."""
    return f"http://{name}.{namespace}.svc/v1"
