"""The PodDisruptionBudget over all engine pods of an LLMService: at most one voluntarily down.

maxUnavailable 1 (not minAvailable) so that a service of one replica can still be drained
off a reclaimed node; and the default unhealthy-pod policy, so a drained (not-ready) pod
still counts against the budget and a second eviction waits.
"""

from __future__ import annotations

from typing import Any

from llmfleet.operator.api.llmservice import LLMService

from .labels import object_meta, selector_labels

MAX_UNAVAILABLE = 1


def render_pdb(service: LLMService) -> dict[str, Any]:
    name = service.metadata.name
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": object_meta(service, name),
        "spec": {"maxUnavailable": MAX_UNAVAILABLE, "selector": {"matchLabels": selector_labels(name)}},
    }
