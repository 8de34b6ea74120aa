"""A node's interruption notice, and the RFC 3339 times notices carry: the types the signal scan,
the drains and the SpotPool status share."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

NoticeKind = Literal["Interruption", "Advisory"]
@dataclass(frozen=True)
class Notice:
    """A node that will be (Interruption) or may soon be (Advisory) reclaimed."""

    node: str
    kind: NoticeKind
    source: str  # "<source>/<key>" of the signal that decided the deadline
    deadline: datetime
    noticed_at: datetime  # t0: when the notice was given (or first seen)
    deadline_known: bool  # False: deadline = t0 + the signal's default noticeSeconds
    also: tuple[str, ...] = ()  # other signals seen on the same node
    # False: an Event alone says the deadline has already passed. The node is still there, so
    # the claim is doubtful: drain with the pods' own grace, not a 1 s kill past the PDB.
    confirmed: bool = True

    @property
    def notice_seconds(self) -> float:
        return (self.deadline - self.noticed_at).total_seconds()


@dataclass(frozen=True)
class IgnoredSignal:
    """A signal that could not be used as given; `reason` is one CamelCase word."""

    node: str
    source: str
    reason: str
    message: str


@dataclass(frozen=True)
class SignalScan:
    notices: list[Notice] = field(default_factory=list)
    ignored: list[IgnoredSignal] = field(default_factory=list)


def parse_rfc3339(text: object) -> datetime | None:
    """An RFC 3339 time with an offset (Z or ±hh:mm), or None. Naive times are refused."""
    if not isinstance(text, str) or not text or "T" not in text.upper():
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


def format_rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
