"""Base model shared by every custom-resource model.

Python attributes are snake_case; the Kubernetes wire names are camelCase
aliases, as every Kubernetes API spells them.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """Fields serialise under camelCase aliases; either name is accepted on input."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    def to_wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase keys, unset optional fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def describe_invalid(exc: ValidationError, limit: int = 500) -> str:
    """What is wrong, for a condition or an event: the first error's field as users write it and
    why (`spec.schedules.0.timeZone: unknown IANA time zone 'Mars/Olympus'`), not pydantic's
    first line ("1 validation error for AutoscalePolicy"), which names neither."""
    errors = exc.errors()
    if not errors:
        return str(exc)[:limit]
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    why = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return (f"{where}: {why}" if where else why)[:limit - len(more)] + more
