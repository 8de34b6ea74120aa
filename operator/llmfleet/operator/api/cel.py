"""CEL validation rules (`x-kubernetes-validations`) attached to pydantic models.

The API server evaluates these rules itself, so a bad object is refused at
`kubectl apply` with a message that names the field. A model carries its rules in
`json_schema_extra`; the CRD generator copies them into the structural schema:

    class Spec(ApiModel):
        model_config = ConfigDict(json_schema_extra=cel_rules(
            Rule("self.minReplicas <= self.maxReplicas",
                 "spec.minReplicas must be less than or equal to spec.maxReplicas",
                 field_path=".minReplicas")))

Rules on a field go in `Field(json_schema_extra=cel_rules(...))` the same way.
Keep rules cheap: the API server estimates their cost from `maxLength`/`maxItems`,
so any string or list a rule walks needs those bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

# The reasons the API server accepts for a failed rule (apiextensions.k8s.io/v1 ValidationRule).
Reason = Literal["FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate"]

VALIDATIONS_KEY = "x-kubernetes-validations"


@dataclass(frozen=True)
class Rule:
    """One CEL rule. `message` should name the field it is about, as users read it."""

    rule: str
    message: str
    field_path: str | None = None
    reason: Reason | None = None

    def to_wire(self) -> dict[str, str]:
        wire = {"rule": self.rule, "message": self.message}
        if self.field_path:
            wire["fieldPath"] = self.field_path
        if self.reason:
            wire["reason"] = self.reason
        return wire


def cel_rules(*rules: Rule) -> dict[str, Any]:
    """A `json_schema_extra` value carrying the given rules."""
    return {VALIDATIONS_KEY: [r.to_wire() for r in rules]}
