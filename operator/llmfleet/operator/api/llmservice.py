"""LLMService: one served model — what to load, which engine runs it, how many replicas, where.

The spec is the user's (and Git's); the operator never writes it. Everything the operator
decides — the replica count chosen by an AutoscalePolicy, the spot/on-demand split, cost —
lands on the generated Deployments and in `status`, so GitOps tools see no drift.
Invariant (enforced by a CEL rule and mirrored here): `replicas` and `autoscalePolicyRef`
are mutually exclusive, so exactly one writer owns the replica count.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from .autoscalepolicy import ScalingStatus
from .base import ApiModel
from .cel import Rule, cel_rules
from .common import (
    DNS1123_SUBDOMAIN,
    Condition,
    LocalObjectReference,
    NodePlacement,
    ObjectMeta,
    Quantity,
    SecretKeySelector,
    conditions_field,
)
from .resource import CrdInfo, PrinterColumn, ScaleSubresource

# file:///abs/dir | pvc://claim[/path] | hf://org/name — the three places a model can come from.
MODEL_URI_PATTERN = (
    r"^(file:///[^\s]*"
    r"|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/[^\s]*)?"
    r"|hf://[A-Za-z0-9][-A-Za-z0-9_.]*/[A-Za-z0-9][-A-Za-z0-9_.]*)$"
)

Phase = Literal["Pending", "Progressing", "Ready", "Degraded", "Failed"]
EngineKind = Literal["embedded", "vllm"]


class ModelSource(ApiModel):
    """Which model to serve and under which name clients ask for it."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            Rule(
                "!has(self.revision) || self.uri.startsWith('hf://')",
                "spec.model.revision applies only to hf:// model URIs",
                field_path=".revision",
                reason="FieldValueForbidden",
            ),
            Rule(
                "!has(self.tokenSecretRef) || self.uri.startsWith('hf://')",
                "spec.model.tokenSecretRef applies only to hf:// model URIs",
                field_path=".tokenSecretRef",
                reason="FieldValueForbidden",
            ),
        )
    )

    uri: str = Field(
        description=(
            "Where the weights are, in Hugging Face layout. `file:///dir`: a directory on the node, "
            "mounted read-only by hostPath at the same path. `pvc://claim/path`: a directory inside a "
            "PersistentVolumeClaim of the same namespace, mounted read-only at /models. "
            "`hf://org/name`: downloaded by an init container into a cache volume before the engine starts."
        ),
        min_length=1,
        max_length=1024,
        pattern=MODEL_URI_PATTERN,
    )
    served_name: str | None = Field(
        None,
        description="The model name clients put in requests (`model` field, /v1/models). Defaults to the LLMService name.",
        max_length=253,
        pattern=r"^[A-Za-z0-9][-A-Za-z0-9_./:]*$",
    )
    revision: str | None = Field(
        None,
        description="For hf:// only: the branch, tag or commit to download. Unset means the repository's default branch.",
        max_length=255,
        pattern=r"^[-A-Za-z0-9_./]+$",
    )
    token_secret_ref: SecretKeySelector | None = Field(
        None, description="For hf:// only: a Secret key holding a Hugging Face token, for gated or private models."
    )

    @model_validator(mode="after")
    def _hf_only_fields(self) -> ModelSource:
        if not self.uri.startswith("hf://"):
            for field, value in (("revision", self.revision), ("tokenSecretRef", self.token_secret_ref)):
                if value is not None:
                    raise ValueError(f"spec.model.{field} applies only to hf:// model URIs")
        return self


class EngineSpec(ApiModel):
    """Which inference server runs the model, and its tuning flags (vLLM's names and meanings)."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            Rule(
                "self.kind == 'embedded' || !has(self.device)",
                "spec.engine.device applies only to engine kind embedded",
                field_path=".device",
                reason="FieldValueForbidden",
            ),
        )
    )

    kind: EngineKind = Field(
        "embedded",
        description="`embedded`: llmfleet's own engine (supports drain). `vllm`: the upstream vLLM OpenAI server.",
    )
    image: str | None = Field(
        None,
        description="Container image. Defaults to the operator's engine image for `embedded`, and to its pinned vllm/vllm-openai tag for `vllm`.",
        max_length=512,
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        None, description="core/v1 imagePullPolicy; unset lets Kubernetes choose from the tag."
    )
    device: Literal["auto", "cpu", "cuda"] | None = Field(
        None, description="embedded only: where to run; unset means auto (CUDA when a GPU is visible)."
    )
    dtype: Literal["auto", "float16", "bfloat16", "float32"] | None = Field(
        None, description="Weight and activation dtype; unset means the engine's default (auto)."
    )
    max_num_seqs: int | None = Field(
        None, description="Maximum sequences decoded together in one step (batch size).", ge=1, le=4096
    )
    block_size: int | None = Field(
        None, description="Tokens per KV-cache block (paged attention).", ge=1, le=256
    )
    max_model_len: int | None = Field(
        None, description="Maximum context length (prompt + output) in tokens; unset means the model's.", ge=1, le=1048576
    )
    extra_args: list[Annotated[str, Field(max_length=256)]] = Field(
        default_factory=list,
        description="Further engine flags, appended verbatim after the ones above (an escape hatch; prefer fields).",
        max_length=32,
    )
    startup_timeout_seconds: int = Field(
        1800,
        description=(
            "How long a pod may take to load the model before Kubernetes restarts it (the startup probe's budget). "
            "Generous by default: large weights from a network volume take minutes."
        ),
        ge=30,
        le=86400,
    )

    @model_validator(mode="after")
    def _device_for_embedded(self) -> EngineSpec:
        if self.device is not None and self.kind != "embedded":
            raise ValueError("spec.engine.device applies only to engine kind embedded")
        return self


class ResourceSpec(ApiModel):
    """Per-pod compute. Memory is also the limit; CPU is requested, not capped (throttling hurts latency)."""

    gpus: int = Field(
        0, description="GPUs per pod, requested as the `nvidia.com/gpu` extended resource; 0 runs on CPU.", ge=0, le=64
    )
    cpu: Quantity | None = Field(None, description="CPU request, e.g. 2 or 500m.")
    memory: Quantity | None = Field(None, description="Memory request and limit, e.g. 16Gi.")


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


class PortNumber(ApiModel):
    """A port, as the Gateway API Inference Extension writes one."""

    number: int = Field(description="The port number.", ge=1, le=65535)


class EndpointPickerRef(ApiModel):
    """The endpoint picker (EPP) an inference gateway asks which pod of the pool takes a request.

    The same fields as the InferencePool's `spec.endpointPickerRef`, copied into it verbatim.
    """

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            Rule(
                "(has(self.kind) && self.kind != 'Service') || has(self.port)",
                "spec.inferencePool.endpointPickerRef.port is required when kind is Service (the default)",
                field_path=".port",
                reason="FieldValueRequired",
            ),
        )
    )

    name: str = Field(description="Name of the endpoint picker object (usually its Service).", min_length=1, max_length=253)
    kind: str | None = Field(
        None, description="Kind of the referent; unset means Service.", min_length=1, max_length=63,
        pattern=r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$",
    )
    group: str | None = Field(
        None, description="API group of the referent; unset means the core group.", max_length=253,
        pattern=r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    )
    port: PortNumber | None = Field(None, description="The picker Service's port (its gRPC ext-proc port, e.g. 9002).")
    failure_mode: Literal["FailOpen", "FailClose"] | None = Field(
        None,
        description="What the gateway does while the picker does not answer: FailClose (unset) refuses, FailOpen picks any pod.",
    )

    @model_validator(mode="after")
    def _port_for_service(self) -> EndpointPickerRef:
        if self.kind in (None, "Service") and self.port is None:
            raise ValueError("spec.inferencePool.endpointPickerRef.port is required when kind is Service (the default)")
        return self


class InferencePoolSpec(ApiModel):
    """An InferencePool (Gateway API Inference Extension, inference.networking.k8s.io/v1) over the engine pods.

    Rendered only while the InferencePool CRD is installed; without it the InferencePool
    condition says so and everything else is served as usual.
    """

    enabled: bool = Field(True, description="Render the InferencePool; false removes one rendered before.")
    endpoint_picker_ref: EndpointPickerRef | None = Field(
        None,
        description=(
            "The endpoint picker the gateway consults (llm-d's or the extension's EPP, deployed by you). "
            "Unset leaves it out of the pool, for gateways that bring their own."
        ),
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
            "before it is killed. Sets the engine's --shutdown-timeout and the pod's termination grace period."
        ),
        ge=0,
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
        default_factory=list, description="Pods being drained because of an interruption notice.", max_length=64
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
