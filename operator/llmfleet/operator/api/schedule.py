"""AutoscalePolicy.spec.schedules: other replica bounds on some weekdays and hours, in a time zone."""

from __future__ import annotations

import re
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field, field_validator, model_validator

from .base import ApiModel
from .cel import Rule, cel_rules

_HH_MM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
class Weekday(StrEnum):
    MON = "Mon"
    TUE = "Tue"
    WED = "Wed"
    THU = "Thu"
    FRI = "Fri"
    SAT = "Sat"
    SUN = "Sun"


ALL_DAYS = list(Weekday)


class ScheduleWindow(ApiModel):
    """A recurring time window that overrides minReplicas and/or maxReplicas while it is in force."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            Rule(
                "has(self.minReplicas) || has(self.maxReplicas)",
                "a schedule must override minReplicas, maxReplicas or both",
                reason="FieldValueRequired",
            ),
            Rule(
                "!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
                "schedule minReplicas must be less than or equal to maxReplicas",
                field_path=".minReplicas",
            ),
        )
    )

    name: str = Field(
        min_length=1, max_length=63, description="Name of the window, shown in status when it is in force."
    )
    days_of_week: list[Weekday] = Field(
        default_factory=lambda: list(ALL_DAYS),
        min_length=1,
        max_length=7,
        description=(
            "Days (Mon..Sun, in timeZone) on which the window starts; default every day. A window "
            "that crosses midnight belongs to the day it starts."
        ),
    )
    start: str = Field(pattern=_HH_MM, description="Local start time HH:MM (inclusive).")
    end: str = Field(
        pattern=_HH_MM,
        description=(
            "Local end time HH:MM (exclusive). An end earlier than start crosses midnight; "
            "an end equal to start means 24 hours."
        ),
    )
    time_zone: str = Field(
        "UTC", max_length=64, description="IANA time zone of start and end, e.g. Europe/Berlin; default UTC."
    )
    min_replicas: int | None = Field(None, ge=1, le=1000, description="minReplicas while the window is in force.")
    max_replicas: int | None = Field(None, ge=1, le=1000, description="maxReplicas while the window is in force.")

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        # OSError: a key naming a directory of the zone database ("America", "Etc") opens it as a
        # file; anything but ValueError would escape validation and fail every sync of the policy
        # and its services with a traceback instead of a condition naming the field.
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _overrides_something(self) -> ScheduleWindow:
        if self.min_replicas is None and self.max_replicas is None:
            raise ValueError("a schedule must override minReplicas, maxReplicas or both")
        if (
            self.min_replicas is not None
            and self.max_replicas is not None
            and self.min_replicas > self.max_replicas
        ):
            raise ValueError("schedule minReplicas must be less than or equal to maxReplicas")
        return self


def parse_hh_mm(value: str) -> tuple[int, int]:
    """'07:30' → (7, 30); the pattern on ScheduleWindow guarantees the shape."""
    match = re.match(_HH_MM, value)
    if not match:
        raise ValueError(f"not HH:MM: {value!r}")
    hours, minutes = value.split(":")
    return int(hours), int(minutes)
