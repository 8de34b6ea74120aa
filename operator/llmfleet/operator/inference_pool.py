"""Applies (or removes) an LLMService's InferencePool, and says how that went in a condition.

The InferencePool CRD is optional: a cluster without the Gateway API Inference Extension
still serves every LLMService through its Service and llmfleet-router. The API server
answers a server-side apply of an unserved resource with 404, which is how the operator
learns the CRD is absent (no cluster-wide read of CustomResourceDefinitions needed); a
pool that cannot be applied never blocks the Deployments.

| spec.inferencePool   | apply / delete says         | InferencePoolReady | event                   |
| -------------------- | --------------------------- | ------------------ | ----------------------- |
| enabled              | applied                     | True  Applied      | Normal InferencePoolApplied |
| enabled              | 404 (no such resource)      | False CRDNotInstalled | Warning, same reason |
| enabled              | other refusal               | False ApplyFailed  | Warning, same reason    |
| unset or disabled, a pool applied before | deleted  | False Disabled     | Normal InferencePoolDeleted |
| unset or disabled, none before | nothing            | (none)             | none                    |

Events only when the condition's reason changes, so periodic re-applies stay quiet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llmfleet.operator.adapters.kube import Kube, KubeError
from llmfleet.operator.api.common import Condition
from llmfleet.operator.api.llmservice import LLMService
from llmfleet.operator.render.inference_pool import (
    INFERENCE_POOL_CRD,
    render_inference_pool,
    wants_inference_pool,
)

log = logging.getLogger("llmfleet.operator")

CONDITION = "InferencePoolReady"

# post(type "Normal"|"Warning", reason, message)
Post = Callable[[str, str, str], None]


@dataclass(frozen=True)
class PoolOutcome:
    status: str  # "True" | "False"
    reason: str
    message: str
    event_type: str


def applied() -> PoolOutcome:
    return PoolOutcome("True", "Applied", "InferencePool applied over the engine pods", "Normal")


def crd_missing() -> PoolOutcome:
    return PoolOutcome(
        "False", "CRDNotInstalled",
        f"spec.inferencePool is set but the CustomResourceDefinition {INFERENCE_POOL_CRD} is not installed: "
        "install the Gateway API Inference Extension's CRDs; the service is served without a pool meanwhile",
        "Warning",
    )


def apply_failed(message: str) -> PoolOutcome:
    return PoolOutcome("False", "ApplyFailed", f"InferencePool refused: {message}"[:1000], "Warning")


def disabled() -> PoolOutcome:
    return PoolOutcome("False", "Disabled", "spec.inferencePool is unset or disabled: the InferencePool was deleted",
                       "Normal")


def had_pool(conditions: Sequence[dict]) -> bool:
    """Whether this operator applied a pool for the service before (its condition says True)."""
    return any(c.get("type") == CONDITION and c.get("status") == "True" for c in conditions)


def pool_condition(outcome: PoolOutcome, generation: int | None) -> Condition:
    return Condition(type=CONDITION, status=outcome.status, reason=outcome.reason,  # type: ignore[arg-type]
                     message=outcome.message, observed_generation=generation)


async def sync_inference_pool(kube: Kube, service: LLMService, old_conditions: Sequence[dict],
                              post: Post) -> Condition | None:
    """Apply or delete the pool as spec.inferencePool asks; the condition to merge, None to leave it alone."""
    namespace, name = service.metadata.namespace, service.metadata.name
    if wants_inference_pool(service):
        try:
            await kube.apply(render_inference_pool(service))
        except KubeError as exc:
            outcome = crd_missing() if exc.status == 404 else apply_failed(exc.message)
        else:
            outcome = applied()
    elif had_pool(old_conditions):
        try:
            await kube.delete("InferencePool", namespace, name)
        except KubeError as exc:  # 404 (gone, or the CRD with it) is absorbed by delete
            log.info("deleting InferencePool %s/%s: %s", namespace, name, exc)
            return None  # try again at the next apply
        outcome = disabled()
    else:
        return None
    old_reason = next((c.get("reason") for c in old_conditions if c.get("type") == CONDITION), None)
    if outcome.reason != old_reason:
        event = {"Applied": "InferencePoolApplied", "Disabled": "InferencePoolDeleted"}.get(outcome.reason,
                                                                                         outcome.reason)
        post(outcome.event_type, event, outcome.message)
    return pool_condition(outcome, service.metadata.generation)
