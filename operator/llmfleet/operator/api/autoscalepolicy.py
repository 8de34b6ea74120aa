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

from enum import StrEnum
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from .base import ApiModel
from .cel import Rule, cel_rules
from .common import ObjectMeta
from .hpa_behavior import (
    HPABehavior,
)
from .metric import (
    MetricTarget,
)
from .resource import CrdInfo, PrinterColumn
from .scaling_status import (
    AutoscalePolicyStatus,
)
from .schedule import (
    ScheduleWindow,
)

KIND = "AutoscalePolicy"


# --- spec -----------------------------------------------------------------------------


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
        le=1000,
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
    max_replicas: int = Field(ge=1, le=1000, description="Highest replica count (at most 1000, as spec.replicas).")
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
        None, ge=1, le=1000, description="Replica count used while metrics are unavailable; required with Fallback."
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
