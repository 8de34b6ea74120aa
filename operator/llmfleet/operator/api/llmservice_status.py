"""LLMService.status: what the operator reports of a service (phase, counts, conditions, cost,
spot, router); the operator writes it, users and tools read it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from llmfleet.operator.api.scaling_status import ScalingStatus
from pydantic import Field

from .base import ApiModel
from .common import (
    Condition,
    conditions_field,
)

MAX_DRAINING_PODS = 64  # status.spot.drainingPods lists at most this many; drainingPodCount has them all
Phase = Literal["Pending", "Progressing", "Ready", "Degraded", "Failed"]
class Cost(ApiModel):
    """Fleet cost from spec.pricing and the engines' token counters."""

    per_hour: float | None = Field(None, description="Cost of the running replicas per hour.", ge=0)
    per_1k_tokens: float | None = Field(
        None, alias="per1kTokens", description="Cost per 1,000 generated tokens at the recent token rate.", ge=0
    )


class DrainingPod(ApiModel):
    """An engine pod being drained off a node that is going away."""

    name: str = Field(description="Pod name.", max_length=253)
    node: str | None = Field(None, description="Node the pod runs on.", max_length=253)
    started_at: datetime | None = Field(None, description="When the drain started.")
    deadline: datetime | None = Field(None, description="When the node is expected to disappear.")


class SpotStatus(ApiModel):
    """Spot state of this service: with a spotPoolRef, the fallback and the drains; without one, the drains."""

    fallback_active: bool | None = Field(
        None, description="True while spot replicas run on on-demand nodes because spot capacity is missing."
    )
    fallback_since: datetime | None = Field(None, description="When the current fallback started.")
    fallback_replicas: int | None = Field(
        None,
        description="How many spot replicas run on on-demand nodes now (the fallback moves only what spot cannot place).",
        ge=0,
        le=1000,
    )
    draining_pods: list[DrainingPod] = Field(
        default_factory=list,
        description=f"Pods being drained because of an interruption notice (the first {MAX_DRAINING_PODS} by name).",
        max_length=MAX_DRAINING_PODS,
    )
    draining_pod_count: int | None = Field(
        None, description="How many pods are being drained, all of them (drainingPods lists at most 64).",
        ge=0, le=100000,
    )


class RouterStatus(ApiModel):
    """How clients reach the service through llmfleet-router."""

    url: str = Field(description="The router's in-cluster OpenAI base URL (every model of the fleet).", max_length=1024)
    model: str = Field(description="The `model` to send in requests for this service.", max_length=253)


class LLMServiceStatus(ApiModel):
    """The observed state of an LLMService, written by the operator only."""

    observed_generation: int | None = Field(
        None, description="The metadata.generation the status reflects.", ge=0, le=2**63 - 1
    )
    phase: Phase | None = Field(
        None,
        description="Pending (nothing scheduled yet), Progressing (rolling out or loading), Ready, Degraded (serving below desired), Failed (cannot serve; see conditions).",
    )
    replicas: int | None = Field(None, description="Engine pods that exist, all Deployments together.", ge=0, le=100000)
    ready_replicas: int | None = Field(None, description="Engine pods that are ready to serve.", ge=0, le=100000)
    desired_replicas: int | None = Field(
        None, description="The replica count the operator is converging to (fixed, or the autoscaler's).", ge=0, le=100000
    )
    ready_text: str | None = Field(
        None, description="readyReplicas/desiredReplicas as text, for the READY column.", max_length=32
    )
    spot_replicas: int | None = Field(None, description="Replicas placed on spot nodes.", ge=0, le=100000)
    on_demand_replicas: int | None = Field(None, description="Replicas placed on on-demand nodes.", ge=0, le=100000)
    selector: str | None = Field(
        None, description="Label selector of the engine pods (for the scale subresource).", max_length=1024
    )
    endpoint: str | None = Field(None, description="In-cluster URL of the OpenAI-compatible API.", max_length=1024)
    served_model_name: str | None = Field(None, description="The model name clients use.", max_length=253)
    router: RouterStatus | None = Field(
        None,
        description=(
            "The llmfleet-router endpoint serving this model (the ROUTER column): prefix- and load-aware, "
            "unlike `endpoint`. Absent when the operator runs without a router."
        ),
    )
    average_queue_depth: float | None = Field(
        None, description="Requests waiting per ready replica at the last sync (the QUEUE column).", ge=0
    )
    model_startup_seconds: float | None = Field(
        None, description="Observed time from pod start to ready for the latest pod (model load).", ge=0
    )
    conditions: list[Condition] = conditions_field(
        "Ready, Progressing, Degraded, and as features apply ScalingLimited, MetricsAvailable, SpotInterrupted."
    )
    cost: Cost | None = Field(None, description="Cost figures, present when spec.pricing is set.")
    last_scale_reason: str | None = Field(
        None,
        description="Why the replica count last changed, by the autoscaler or a spot fallback (the LAST SCALE column).",
        max_length=1024,
    )
    scaling: ScalingStatus | None = Field(
        None, description="Autoscaler state and recent decisions, present with an autoscalePolicyRef."
    )
    spot: SpotStatus | None = Field(
        None,
        description=(
            "Spot state: present with a spotPoolRef; without one, only while a pod is being drained off a node "
            "with an interruption notice."
        ),
    )
