"""LLMService.spec.engine and .resources: which engine serves the model, its options, and the
pod's resources."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from .base import ApiModel
from .cel import Rule, cel_rules
from .common import (
    ResourceQuantity,
)

EngineKind = Literal["embedded", "vllm"]
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
    """Per-pod compute and scratch space. Memory is also the limit; CPU is requested, not capped (throttling
    hurts latency); the writable volumes have size limits."""

    gpus: int = Field(
        0, description="GPUs per pod, requested as the `nvidia.com/gpu` extended resource; 0 runs on CPU.", ge=0, le=64
    )
    cpu: ResourceQuantity | None = Field(None, description="CPU request, e.g. 2 or 500m.")
    memory: ResourceQuantity | None = Field(
        None, description="Memory request and limit, e.g. 16Gi. Unset: a 2Gi request and a 16Gi limit, so one "
        "engine cannot push a shared node into OOM.")
    cache_size: ResourceQuantity | None = Field(
        None, description="Size limit of the pod's cache volume (hf:// downloads, Hugging Face and compile caches); "
        "unset: 100Gi for hf:// models, 10Gi otherwise. /tmp is limited to 1Gi.")
