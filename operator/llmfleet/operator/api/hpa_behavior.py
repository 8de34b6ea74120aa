"""AutoscalePolicy.spec.behavior: the HorizontalPodAutoscaler's scale-up and scale-down rules
(stabilization windows, Pods/Percent policies, selectPolicy), with autoscaling/v2's names and
defaults."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from .base import ApiModel


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
