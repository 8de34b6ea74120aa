"""LLMService.spec.inferencePool: the InferencePool (Gateway API Inference Extension) the operator
renders over a service's engine pods: its ports and endpoint picker."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from .base import ApiModel
from .cel import Rule, cel_rules


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
