"""AutoscalePolicy: HorizontalPodAutoscaler-shaped rules driven by the engine's queue.

The spec copies the knobs of `autoscaling/v2` (minReplicas, maxReplicas, behavior with
its stabilization windows, Pods/Percent policies and selectPolicy), with the same names
and defaults, so an admin who knows the HPA reads it at once. What differs is the metric
(the engine's queue, in-flight requests or KV-cache usage, averaged over ready pods) and
three additions the HPA lacks: schedules, onMetricsUnavailable, and the scaling state
kept in status so a restart of the operator forgets nothing.

`ScalingStatus` is the per-LLMService part of that state; LLMService.status embeds it
as `scaling`. The decision itself lives in `llmfleet.operator.scaling`.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field, field_validator, model_validator

from .base import ApiModel
from .cel import Rule, cel_rules
from .common import Condition, ObjectMeta, conditions_field
from .resource import CrdInfo, PrinterColumn

KIND = "AutoscalePolicy"

# How many scale decisions LLMService.status.scaling.decisions keeps: enough for
# `kubectl describe` to explain the last few scales, small enough for a status patch.
DECISION_HISTORY_LIMIT = 10

_HH_MM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


# --- spec -----------------------------------------------------------------------------


class MetricType(StrEnum):
    """Which engine gauge, per ready pod, drives the scale."""

    QUEUE_DEPTH = "QueueDepth"  # llmfleet_engine_requests_waiting
    IN_FLIGHT = "InFlight"  # requests_waiting + requests_running
    KV_CACHE_USAGE = "KVCacheUsage"  # kv_cache_usage_ratio, in [0, 1]


class MetricTarget(ApiModel):
    """The metric and its target average per ready replica."""

    type: MetricType = Field(
        MetricType.QUEUE_DEPTH,
        description=(
            "QueueDepth: requests waiting to be scheduled (llmfleet_engine_requests_waiting); "
            "InFlight: waiting + running requests; KVCacheUsage: fraction of the KV cache in use (0..1)."
        ),
    )
    target_average_value: float = Field(
        gt=0,
        description=(
            "Target value of the metric averaged over ready replicas, e.g. 4 waiting requests per "
            "replica for QueueDepth or 0.8 for KVCacheUsage. desired = ceil(ready x average / target)."
        ),
    )


class ScalingPolicyType(StrEnum):
    PODS = "Pods"
    PERCENT = "Percent"


class ScalingPolicySelect(StrEnum):
    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


class HPAScalingPolicy(ApiModel):
    """One rate limit, as in autoscaling/v2: at most `value` pods (or percent) per `periodSeconds`."""

    type: ScalingPolicyType = Field(
        description="Pods: an absolute number of pods; Percent: a percentage of the replicas at the start of the period."
    )
    value: int = Field(
        gt=0,
        description="Amount of change the policy permits within periodSeconds; must be greater than zero.",
    )
    period_seconds: int = Field(
        ge=1, le=1800, description="Window, in seconds, over which the policy holds (1..1800, as in the HPA)."
    )


def _policies_default(*items: tuple[str, int, int]) -> list[HPAScalingPolicy]:
    return [HPAScalingPolicy(type=ScalingPolicyType(t), value=v, period_seconds=p) for t, v, p in items]


class HPAScalingRules(ApiModel):
    """Scaling behaviour in one direction, with the fields of autoscaling/v2 HPAScalingRules."""

    stabilization_window_seconds: int = Field(
        0,
        ge=0,
        le=3600,
        description=(
            "Seconds of past recommendations to consider: scale-down uses the highest recommendation "
            "within the window, scale-up the lowest (0..3600)."
        ),
    )
    select_policy: ScalingPolicySelect = Field(
        ScalingPolicySelect.MAX,
        description="Max: the policy allowing the largest change wins; Min: the smallest; Disabled: never scale in this direction.",
    )
    policies: list[HPAScalingPolicy] = Field(
        min_length=1, max_length=10, description="Rate limits in this direction; at least one."
    )


class ScaleUpRules(HPAScalingRules):
    """Scale-up rules; the defaults are the HPA's: no stabilization, double or add 4 pods per 15s, whichever is more."""

    stabilization_window_seconds: int = Field(
        0,
        ge=0,
        le=3600,
        description="Seconds over which the lowest recent recommendation is used (default 0: react at once).",
    )
    policies: list[HPAScalingPolicy] = Field(
        default_factory=lambda: _policies_default(("Percent", 100, 15), ("Pods", 4, 15)),
        min_length=1,
        max_length=10,
        description="Rate limits on scale-up (default: Percent 100 per 15s and Pods 4 per 15s).",
    )


class ScaleDownRules(HPAScalingRules):
    """Scale-down rules; the defaults are the HPA's: a 300s stabilization window, then any amount per 15s."""

    stabilization_window_seconds: int = Field(
        300,
        ge=0,
        le=3600,
        description=(
            "Seconds over which the highest recent recommendation is used (default 300: a burst is "
            "not forgotten for five minutes)."
        ),
    )
    policies: list[HPAScalingPolicy] = Field(
        default_factory=lambda: _policies_default(("Percent", 100, 15)),
        min_length=1,
        max_length=10,
        description="Rate limits on scale-down (default: Percent 100 per 15s).",
    )


class HPABehavior(ApiModel):
    """autoscaling/v2 HorizontalPodAutoscalerBehavior: stabilization and rate limits per direction."""

    scale_up: ScaleUpRules = Field(
        default_factory=lambda: ScaleUpRules.model_validate({}), description="Rules for scaling up."
    )
    scale_down: ScaleDownRules = Field(
        default_factory=lambda: ScaleDownRules.model_validate({}), description="Rules for scaling down."
    )


class Weekday(StrEnum):
    MON = "Mon"
    TUE = "Tue"
    WED = "Wed"
    THU = "Thu"
    FRI = "Fri"
    SAT = "Sat"
    SUN = "Sun"


ALL_DAYS = list(Weekday)


class ScheduleWindow(ApiModel):
    """A recurring time window that overrides minReplicas and/or maxReplicas while it is in force."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            Rule(
                "has(self.minReplicas) || has(self.maxReplicas)",
                "a schedule must override minReplicas, maxReplicas or both",
                reason="FieldValueRequired",
            ),
            Rule(
                "!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
                "schedule minReplicas must be less than or equal to maxReplicas",
                field_path=".minReplicas",
            ),
        )
    )

    name: str = Field(
        min_length=1, max_length=63, description="Name of the window, shown in status when it is in force."
    )
    days_of_week: list[Weekday] = Field(
        default_factory=lambda: list(ALL_DAYS),
        min_length=1,
        max_length=7,
        description=(
            "Days (Mon..Sun, in timeZone) on which the window starts; default every day. A window "
            "that crosses midnight belongs to the day it starts."
        ),
    )
    start: str = Field(pattern=_HH_MM, description="Local start time HH:MM (inclusive).")
    end: str = Field(
        pattern=_HH_MM,
        description=(
            "Local end time HH:MM (exclusive). An end earlier than start crosses midnight; "
            "an end equal to start means 24 hours."
        ),
    )
    time_zone: str = Field(
        "UTC", max_length=64, description="IANA time zone of start and end, e.g. Europe/Berlin; default UTC."
    )
    min_replicas: int | None = Field(None, ge=1, description="minReplicas while the window is in force.")
    max_replicas: int | None = Field(None, ge=1, description="maxReplicas while the window is in force.")

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _overrides_something(self) -> ScheduleWindow:
        if self.min_replicas is None and self.max_replicas is None:
            raise ValueError("a schedule must override minReplicas, maxReplicas or both")
        if (
            self.min_replicas is not None
            and self.max_replicas is not None
            and self.min_replicas > self.max_replicas
        ):
            raise ValueError("schedule minReplicas must be less than or equal to maxReplicas")
        return self


class OnMetricsUnavailable(StrEnum):
    HOLD = "Hold"
    FALLBACK = "Fallback"


class AutoscalePolicySpec(ApiModel):
    """What an admin writes: bounds, the metric and its target, and HPA behavior."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            Rule(
                "self.minReplicas <= self.maxReplicas",
                "spec.minReplicas must be less than or equal to spec.maxReplicas",
                field_path=".minReplicas",
            ),
            Rule(
                "self.onMetricsUnavailable != 'Fallback' || has(self.fallbackReplicas)",
                "spec.fallbackReplicas is required when spec.onMetricsUnavailable is Fallback",
                field_path=".fallbackReplicas",
                reason="FieldValueRequired",
            ),
        )
    )

    min_replicas: int = Field(
        1,
        ge=0,
        description=(
            "Lowest replica count (default 1). 0 lets an idle service scale to zero: llmfleet-router "
            "holds the requests that arrive meanwhile, the operator scales 0 -> 1 on them, and the "
            "first answers wait for a cold start (model load; see docs/router.md)."
        ),
    )
    scale_to_zero_idle_seconds: int = Field(
        300,
        ge=0,
        le=86400,
        description=(
            "With minReplicas 0: how long a service must have no request in flight and none held by a "
            "router before it may scale to zero (KEDA's cooldownPeriod). Ignored otherwise."
        ),
    )
    max_replicas: int = Field(ge=1, description="Highest replica count.")
    metric: MetricTarget = Field(
        description="The engine metric to scale on and its target average per ready replica."
    )
    tolerance: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="No scale while |average/target - 1| <= tolerance (inclusive), as the HPA's default 0.1.",
    )
    sync_period_seconds: int = Field(
        15,
        ge=1,
        le=3600,
        description="Seconds between two scaling decisions (the HPA's --horizontal-pod-autoscaler-sync-period, default 15).",
    )
    behavior: HPABehavior = Field(
        default_factory=HPABehavior,
        description="Stabilization windows and rate limits, exactly as autoscaling/v2 behavior.",
    )
    schedules: list[ScheduleWindow] = Field(
        default_factory=list,
        max_length=32,
        description="Time windows for known peaks or quiet hours that override minReplicas/maxReplicas while in force.",
    )
    on_metrics_unavailable: OnMetricsUnavailable = Field(
        OnMetricsUnavailable.HOLD,
        description=(
            "What to do when no ready pod has a fresh metric: Hold keeps the current replica count "
            "(default); Fallback scales towards fallbackReplicas."
        ),
    )
    fallback_replicas: int | None = Field(
        None, ge=1, description="Replica count used while metrics are unavailable; required with Fallback."
    )

    @model_validator(mode="after")
    def _consistent(self) -> AutoscalePolicySpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must be less than or equal to maxReplicas")
        if self.on_metrics_unavailable is OnMetricsUnavailable.FALLBACK and self.fallback_replicas is None:
            raise ValueError("fallbackReplicas is required when onMetricsUnavailable is Fallback")
        names = [s.name for s in self.schedules]
        if len(names) != len(set(names)):
            raise ValueError("schedule names must be unique")
        return self


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
        default_factory=list, description="Recommendations within the longest stabilization window."
    )
    scale_events: list[ScaleEvent] = Field(
        default_factory=list, description="Scales within the longest rate-limit period."
    )

    @classmethod
    def from_status(cls, raw: dict[str, Any] | None) -> ScalingStatus:
        """Read `status.scaling` as the API server returns it (camelCase, RFC 3339 times); None → empty."""
        return cls.model_validate(raw or {})


# --- the resource ---------------------------------------------------------------------


class AutoscalePolicy(ApiModel):
    """The AutoscalePolicy custom resource (namespaced, short name `asp`)."""

    api_version: Literal["llmfleet.dev/v1alpha1"] = Field(
        "llmfleet.dev/v1alpha1", description="llmfleet.dev/v1alpha1"
    )
    kind: Literal["AutoscalePolicy"] = Field("AutoscalePolicy", description="AutoscalePolicy")
    metadata: ObjectMeta = Field(description="Standard object metadata.")
    spec: AutoscalePolicySpec = Field(description="Desired scaling behaviour.")
    status: AutoscalePolicyStatus | None = Field(None, description="Observed state, written by the operator.")


def parse_hh_mm(value: str) -> tuple[int, int]:
    """'07:30' → (7, 30); the pattern on ScheduleWindow guarantees the shape."""
    match = re.match(_HH_MM, value)
    if not match:
        raise ValueError(f"not HH:MM: {value!r}")
    hours, minutes = value.split(":")
    return int(hours), int(minutes)


CRD = CrdInfo(
    kind=KIND,
    plural="autoscalepolicies",
    scope="Namespaced",
    spec_model=AutoscalePolicySpec,
    status_model=AutoscalePolicyStatus,
    short_names=("asp",),
    description="HPA-like scaling rules on the engine's queue, shared by the LLMServices that reference it.",
    printer_columns=(
        PrinterColumn("Metric", ".spec.metric.type", "string", "The metric scaled on."),
        PrinterColumn(
            "Target", ".spec.metric.targetAverageValue", "number", "Target average per ready replica."
        ),
        PrinterColumn(
            "Min", ".status.bounds.minReplicas", "integer", "minReplicas in force (after schedules)."
        ),
        PrinterColumn(
            "Max", ".status.bounds.maxReplicas", "integer", "maxReplicas in force (after schedules)."
        ),
        PrinterColumn(
            "Schedules", ".status.bounds.activeSchedules", "string", "Schedules in force.", priority=1
        ),
        PrinterColumn("Services", ".status.services", "string", "LLMServices using the policy.", priority=1),
        PrinterColumn("Age", ".metadata.creationTimestamp", "date", "Time since creation."),
    ),
)
