"""The autoscaler's state in status: AutoscalePolicy.status (the services using it, the bounds in
force) and each LLMService's status.scaling (the history the stabilization windows and rate
limits decide with, kept so an operator restart forgets nothing)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field

from .base import ApiModel
from .common import Condition, conditions_field
from .metric import MetricType

# How many scale decisions LLMService.status.scaling.decisions keeps: enough for
# `kubectl describe` to explain the last few scales, small enough for a status patch.
DECISION_HISTORY_LIMIT = 10
# --- status ---------------------------------------------------------------------------


class BoundsInForce(ApiModel):
    """minReplicas/maxReplicas after schedules, and which schedules set them."""

    min_replicas: int = Field(description="minReplicas in force now.")
    max_replicas: int = Field(description="maxReplicas in force now.")
    active_schedules: list[str] = Field(
        default_factory=list, description="Names of the schedules in force now."
    )


class AutoscalePolicyStatus(ApiModel):
    observed_generation: int | None = Field(
        None, description="metadata.generation last seen by the operator."
    )
    services: list[str] = Field(
        default_factory=list, description="Names of the LLMServices in this namespace that use the policy."
    )
    bounds: BoundsInForce | None = Field(None, description="Bounds in force at the last sync.")
    conditions: list[Condition] = conditions_field("Latest observations of the policy's state.")


class Recommendation(ApiModel):
    """One unstabilized recommendation, kept for the stabilization windows."""

    timestamp: datetime = Field(description="When the recommendation was made.")
    replicas: int = Field(description="Recommended replicas before stabilization and rate limits.")


class ScaleDirection(StrEnum):
    UP = "Up"
    DOWN = "Down"


class ScaleEvent(ApiModel):
    """One applied scale, kept for the rate-limit policies' periods."""

    timestamp: datetime = Field(description="When the scale was applied.")
    replica_change: int = Field(ge=0, description="How many replicas were added or removed.")
    direction: ScaleDirection = Field(description="Up or Down.")


class ScaleDecisionRecord(ApiModel):
    """One applied scale, for people: `kubectl describe llms` explains it."""

    model_config = ConfigDict(populate_by_name=True)

    time: datetime = Field(description="When the scale was applied.")
    from_: int = Field(alias="from", description="Replicas before.")
    to: int = Field(description="Replicas after.")
    reason: str = Field(
        max_length=1024, description="Why, in the HPA's words (e.g. 'QueueDepth above target')."
    )


class ScalingStatus(ApiModel):
    """Per-LLMService autoscaling state, embedded in LLMService.status as `scaling`.

    recommendations and scaleEvents are the memory of the stabilization windows and
    rate-limit periods; keeping them in status means an operator restart neither scales
    down early nor forgets a burst.
    """

    policy: str | None = Field(None, max_length=253, description="Name of the AutoscalePolicy in use.")
    desired_replicas: int | None = Field(None, description="Replicas chosen at the last sync.")
    current_metric: float | None = Field(
        None, description="Metric average over ready replicas at the last sync."
    )
    metric_type: MetricType | None = Field(None, description="Which metric currentMetric is.")
    last_sync_time: datetime | None = Field(None, description="Time of the last sync.")
    last_scale_time: datetime | None = Field(None, description="Time of the last applied scale.")
    decisions: list[ScaleDecisionRecord] = Field(
        default_factory=list, description=f"The last {DECISION_HISTORY_LIMIT} scales, oldest first."
    )
    recommendations: list[Recommendation] = Field(
        default_factory=list, max_length=2048,
        description="The recommendations within the stabilization windows that can still decide (compacted: "
        "one per distinct replica count at most).",
    )
    scale_events: list[ScaleEvent] = Field(
        default_factory=list, max_length=2048, description="Scales within the longest rate-limit period."
    )

    @classmethod
    def from_status(cls, raw: dict[str, Any] | None) -> ScalingStatus:
        """Read `status.scaling` as the API server returns it (camelCase, RFC 3339 times); None → empty."""
        return cls.model_validate(raw or {})
