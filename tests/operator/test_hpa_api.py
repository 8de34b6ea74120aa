"""The AutoscalePolicy model: HPA defaults, validation, CEL rules and the status shapes."""

import pytest
from llmfleet.operator.api import autoscalepolicy as asp
from llmfleet.operator.api.autoscalepolicy import AutoscalePolicy, AutoscalePolicySpec
from llmfleet.operator.api.scaling_status import ScalingStatus
from pydantic import ValidationError

MINIMAL = {"maxReplicas": 4, "metric": {"targetAverageValue": 4}}


def test_defaults_are_the_hpa_defaults():
    wire = AutoscalePolicySpec.model_validate(MINIMAL).to_wire()
    assert wire["minReplicas"] == 1
    assert wire["tolerance"] == 0.1
    assert wire["syncPeriodSeconds"] == 15
    assert wire["metric"]["type"] == "QueueDepth"
    assert wire["onMetricsUnavailable"] == "Hold"
    assert wire["behavior"] == {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Max",
            "policies": [
                {"type": "Percent", "value": 100, "periodSeconds": 15},
                {"type": "Pods", "value": 4, "periodSeconds": 15},
            ],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": 300,
            "selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
        },
    }


def test_a_partial_direction_keeps_that_directions_defaults():
    spec = AutoscalePolicySpec.model_validate(
        {**MINIMAL, "behavior": {"scaleDown": {"selectPolicy": "Disabled"}}}
    )
    assert spec.behavior.scale_down.stabilization_window_seconds == 300
    assert spec.behavior.scale_up.stabilization_window_seconds == 0


@pytest.mark.parametrize(
    "patch,message",
    [
        ({"minReplicas": 5}, "minReplicas must be less than or equal to maxReplicas"),
        ({"minReplicas": -1}, "greater than or equal to 0"),  # 0 is scale to zero (scaling/zero.py)
        ({"onMetricsUnavailable": "Fallback"}, "fallbackReplicas is required"),
        ({"metric": {"targetAverageValue": 0}}, "greater than or equal to 0.001"),
        ({"metric": {"type": "Latency", "targetAverageValue": 1}}, "QueueDepth"),
        (
            {"behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 1801}]}}},
            "1800",
        ),
        ({"behavior": {"scaleUp": {"policies": []}}}, "at least 1"),
        ({"behavior": {"scaleDown": {"selectPolicy": "Sometimes"}}}, "Max"),
        ({"schedules": [{"name": "x", "start": "9:00", "end": "17:00", "minReplicas": 2}]}, "pattern"),
        ({"schedules": [{"name": "x", "start": "09:00", "end": "17:00"}]}, "must override"),
        (
            {
                "schedules": [
                    {
                        "name": "x",
                        "start": "09:00",
                        "end": "17:00",
                        "timeZone": "Mars/Olympus",
                        "minReplicas": 2,
                    }
                ]
            },
            "unknown IANA time zone",
        ),
        ({"schedules": [{"name": "x", "start": "09:00", "end": "10:00", "minReplicas": 2}] * 2}, "unique"),
        # a directory of the zone database: IsADirectoryError, not a ValidationError, before
        ({"schedules": [{"name": "x", "start": "09:00", "end": "17:00", "timeZone": "America", "minReplicas": 2}]},
         "unknown IANA time zone 'America'"),
        ({"schedules": [{"name": "x", "start": "09:00", "end": "17:00", "timeZone": "Etc", "minReplicas": 2}]},
         "unknown IANA time zone"),
        ({"schedules": [{"name": "x", "start": "09:00", "end": "17:00", "timeZone": "../../etc/passwd",
                         "minReplicas": 2}]}, "unknown IANA time zone"),
    ],
)
def test_invalid_specs_are_refused(patch, message):
    with pytest.raises(ValidationError, match=message):
        AutoscalePolicySpec.model_validate({**MINIMAL, **patch})


def test_cel_rules_travel_in_the_schema():
    rules = [r["rule"] for r in AutoscalePolicySpec.model_json_schema()["x-kubernetes-validations"]]
    assert rules == [
        "self.minReplicas <= self.maxReplicas",
        "self.onMetricsUnavailable != 'Fallback' || has(self.fallbackReplicas)",
    ]


def test_every_field_has_a_description():
    missing = []

    def walk(model):
        for name, field in model.model_fields.items():
            if not field.description:
                missing.append(f"{model.__name__}.{name}")
            for arg in getattr(field.annotation, "__args__", ()) + (field.annotation,):
                if isinstance(arg, type) and issubclass(arg, asp.ApiModel) and arg not in seen:
                    seen.add(arg)
                    walk(arg)

    seen = set()
    walk(AutoscalePolicySpec)
    walk(asp.AutoscalePolicyStatus)
    walk(ScalingStatus)
    assert missing == []


def test_crd_info():
    assert asp.CRD.kind == "AutoscalePolicy"
    assert asp.CRD.short_names == ("asp",)
    assert asp.CRD.spec_model is AutoscalePolicySpec


def test_manifest_round_trip():
    manifest = {
        "apiVersion": "llmfleet.dev/v1alpha1",
        "kind": "AutoscalePolicy",
        "metadata": {"name": "chat-policy", "namespace": "team-a"},
        "spec": MINIMAL,
    }
    policy = AutoscalePolicy.model_validate(manifest)
    assert AutoscalePolicy.model_validate(policy.to_wire()) == policy
    with pytest.raises(ValidationError):
        AutoscalePolicy.model_validate({**manifest, "kind": "HorizontalPodAutoscaler"})


def test_scaling_status_from_empty_status():
    assert ScalingStatus.from_status(None) == ScalingStatus()
    assert ScalingStatus.from_status({}).to_wire() == {
        "decisions": [],
        "recommendations": [],
        "scaleEvents": [],
    }
