"""What rendering needs besides the LLMService: decisions made elsewhere, resolved objects, defaults.

The render functions are pure: everything they depend on is in the LLMService model or in
this record. The handlers fill it from the cluster (the SpotPool they read, the replica
count the autoscaler or the spot split chose, the operator's configured images).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from llmfleet.operator.api.spotpool import SpotPoolSpec

# Which nodes a Deployment's pods go to. `any`: no SpotPool, one Deployment, placed by
# spec.scheduling alone. `ondemand` / `spot`: one of the two Deployments of a pooled service.
Capacity = Literal["any", "ondemand", "spot"]

# Pinned upstream vLLM OpenAI server image, used for engine kind `vllm` without spec.engine.image.
VLLM_IMAGE_DEFAULT = "vllm/vllm-openai:v0.10.2"
# The engine image (images/engine.Containerfile), tagged with the chart's appVersion; the
# chart passes the same name as LLMFLEET_ENGINE_IMAGE (value engineImage).
ENGINE_IMAGE_DEFAULT = "ghcr.io/llmfleet/llmfleet-engine:0.1.0"


@dataclass(frozen=True)
class Images:
    """Default images per engine kind, when spec.engine.image is unset."""

    embedded: str = ENGINE_IMAGE_DEFAULT
    vllm: str = VLLM_IMAGE_DEFAULT


@dataclass(frozen=True)
class RenderContext:
    """Inputs to render_deployment that are not in the LLMService itself."""

    replicas: int
    capacity: Capacity = "any"
    pool: SpotPoolSpec | None = None  # the referenced SpotPool's spec; required unless capacity is "any"
    images: Images = field(default_factory=Images)

    def __post_init__(self) -> None:
        if self.replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {self.replicas}")
        if (self.capacity == "any") != (self.pool is None):
            raise ValueError("a SpotPool is given exactly when capacity is 'ondemand' or 'spot'")
