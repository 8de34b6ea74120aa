"""LLMService: one served model — what to load, which engine runs it, how many replicas, where.

The spec is the user's (and Git's); the operator never writes it. Everything the operator
decides — the replica count chosen by an AutoscalePolicy, the spot/on-demand split, cost —
lands on the generated Deployments and in `status`, so GitOps tools see no drift.
Invariant (enforced by a CEL rule and mirrored here): `replicas` and `autoscalePolicyRef`
are mutually exclusive, so exactly one writer owns the replica count.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from .base import ApiModel
from .cel import Rule, cel_rules
from .common import (
    DNS1123_SUBDOMAIN,
    LocalObjectReference,
    NodePlacement,
    ObjectMeta,
    SecretKeySelector,
)
from .engine_spec import (
    EngineSpec,
    ResourceSpec,
)
from .inference_pool_spec import (
    InferencePoolSpec,
)
from .llmservice_status import (
    LLMServiceStatus,
)
from .model_source import (
    ModelSource,
)
from .resource import CrdInfo, PrinterColumn, ScaleSubresource


class Scheduling(NodePlacement):
    """Pod placement, merged with the SpotPool's placement when one is referenced."""

    priority_class_name: str | None = Field(
        None, description="PriorityClass of the engine pods.", max_length=253, pattern=DNS1123_SUBDOMAIN
    )


class Pricing(ApiModel):
    """Hourly prices of one replica, for cost reporting only (any currency; status uses the same)."""

    on_demand_hourly: float | None = Field(
        None, description="Price of one on-demand replica per hour (its node share: GPUs, CPU, memory).", ge=0
    )
    spot_hourly: float | None = Field(
        None, description="Price of one spot replica per hour; unset means the on-demand price.", ge=0
    )


class LLMServiceSpec(ApiModel):
    """The desired state of an LLMService."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            Rule(
                "!(has(self.replicas) && has(self.autoscalePolicyRef))",
                "spec.replicas and spec.autoscalePolicyRef are mutually exclusive: set replicas for a fixed "
                "count, or reference an AutoscalePolicy",
                field_path=".replicas",
                reason="FieldValueForbidden",
            ),
        )
    )

    model: ModelSource = Field(description="The model to serve.")
    engine: EngineSpec = Field(
        default_factory=lambda: EngineSpec.model_validate({}), description="The inference server and its flags."
    )
    resources: ResourceSpec = Field(
        default_factory=lambda: ResourceSpec.model_validate({}), description="Compute per replica."
    )
    replicas: int | None = Field(
        None,
        description=(
            "Fixed replica count, used when no autoscalePolicyRef is set (unset then means 1). "
            "Also the scale subresource's spec path, so `kubectl scale` and a stock HPA can set it."
        ),
        ge=0,
        le=1000,
    )
    autoscale_policy_ref: LocalObjectReference | None = Field(
        None, description="An AutoscalePolicy in this namespace that chooses the replica count from queue depth."
    )
    spot_pool_ref: LocalObjectReference | None = Field(
        None, description="A SpotPool (cluster-scoped) that splits replicas between spot and on-demand nodes."
    )
    api_key_secret_ref: SecretKeySelector | None = Field(
        None, description="A Secret key holding the API key clients must send as a Bearer token; unset means no key."
    )
    drain_timeout_seconds: int = Field(
        120,
        description=(
            "How long a pod being removed may take to finish its in-flight requests (streams included) "
            "before it is killed. Sets the engine's --shutdown-timeout and the pod's termination grace period. "
            "At least 1: with 0 every request in flight is cut at each scale-down, rollout or drain."
        ),
        ge=1,
        le=3600,
    )
    drain_grace_seconds: int = Field(
        5,
        description=(
            "After a drain starts, how long the engine still admits requests while load balancers learn that "
            "the endpoint is gone (the engine's --drain-grace-seconds)."
        ),
        ge=0,
        le=120,
    )
    scheduling: Scheduling = Field(
        default_factory=lambda: Scheduling.model_validate({}), description="Node placement of the engine pods."
    )
    pricing: Pricing | None = Field(None, description="Hourly prices, for the cost figures in status and metrics.")
    inference_pool: InferencePoolSpec | None = Field(
        None,
        description=(
            "Also render a Gateway API Inference Extension InferencePool named after the service over its pods, "
            "so an inference gateway can route to them (docs/router.md)."
        ),
    )

    @model_validator(mode="after")
    def _one_replica_writer(self) -> LLMServiceSpec:
        if self.replicas is not None and self.autoscale_policy_ref is not None:
            raise ValueError("spec.replicas and spec.autoscalePolicyRef are mutually exclusive")
        return self

    def fixed_replicas(self) -> int:
        """The replica count when no policy decides it."""
        return 1 if self.replicas is None else self.replicas


class LLMService(ApiModel):
    """An LLMService object as read from the API server."""

    model_config = ConfigDict(extra="ignore")

    api_version: Literal["llmfleet.dev/v1alpha1"] = "llmfleet.dev/v1alpha1"
    kind: Literal["LLMService"] = "LLMService"
    metadata: ObjectMeta = Field(default_factory=lambda: ObjectMeta.model_validate({}))
    spec: LLMServiceSpec
    status: LLMServiceStatus = Field(default_factory=lambda: LLMServiceStatus.model_validate({}))


CRD = CrdInfo(
    kind="LLMService",
    plural="llmservices",
    scope="Namespaced",
    short_names=("llms",),
    spec_model=LLMServiceSpec,
    status_model=LLMServiceStatus,
    description="One served model: a fleet of inference-engine pods behind a Service, scaled on queue depth.",
    root_rules=(
        Rule(
            "self.metadata.name.matches('^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$')",
            "metadata.name must be a DNS-1035 label (lowercase letters, digits and '-', starting with a "
            "letter, at most 63 characters): it also names the Service and labels the pods",
        ),
        Rule(
            "!self.metadata.name.endsWith('-spot') && !self.metadata.name.endsWith('-ondemand')",
            "metadata.name must not end in -spot or -ondemand: with a spotPoolRef the LLMService <name> "
            "renders Deployments <name>-spot and <name>-ondemand, so such a name could collide with another's",
        ),
    ),
    scale=ScaleSubresource(
        spec_replicas_path=".spec.replicas",
        status_replicas_path=".status.replicas",
        label_selector_path=".status.selector",
    ),
    printer_columns=(
        PrinterColumn("Model", ".spec.model.uri", "string", "Model URI."),
        PrinterColumn("Ready", ".status.readyText", "string", "Ready replicas / desired replicas."),
        PrinterColumn("Queue", ".status.averageQueueDepth", "number", "Requests waiting per ready replica."),
        PrinterColumn("Phase", ".status.phase", "string", "Lifecycle phase."),
        PrinterColumn("Spot", ".status.spotReplicas", "integer", "Replicas on spot nodes."),
        PrinterColumn("Router", ".status.router.url", "string", "llmfleet-router base URL (model: its served name)."),
        PrinterColumn("Last Scale", ".status.lastScaleReason", "string", "Why the count last changed.", priority=1),
        PrinterColumn("Endpoint", ".status.endpoint", "string", "In-cluster API URL.", priority=1),
    ),
)
