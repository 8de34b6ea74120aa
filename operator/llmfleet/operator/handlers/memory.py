"""What the operator remembers of one LLMService between syncs; all of it can be lost on restart.

| fields                                            | for                                          |
| ------------------------------------------------- | -------------------------------------------- |
| apply_wanted, status_dirty, refs_dirty, next_sync, spot_due, retry_at, wake | the worker: is a sync due, and when (Reconciler.seconds_to_work) |
| last_status, scaling                              | our last status write, newer than a watched body that predates it |
| overlay, versions, applied_generations            | our writes the indexes do not show yet; the Service/PDB resourceVersions; the Deployments' generations as applied (a hand edit moves them on) |
| scrapes, tokens, tokens_per_second, last_active   | the engines' last good /metrics, the token rate, the scale-to-zero idle clock |
| refs, blocked                                     | which references wake the service; it waited on a missing one |
| observed, ref_cache, last_read, last_apply, period | what was read last (without indexes: the API cache), when applied |
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from llmfleet.operator.adapters.scrape import EngineScrape
from llmfleet.operator.api.scaling_status import ScalingStatus
from llmfleet.operator.cost import TokenReading
from llmfleet.operator.sync.plan import DEFAULT_SYNC_SECONDS

from .store import Overlay


@dataclass
class ServiceMemory:
    """What the operator remembers of one service between syncs; all of it can be lost on restart."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    apply_wanted: bool = True  # the first sync after (re)start applies
    status_dirty: bool = True  # a child changed: re-read Deployments and pods
    refs_dirty: bool = False  # a referenced object changed: re-read references
    blocked: bool = False  # the last sync could not apply for a missing reference
    last_read: float = 0.0  # monotonic time of the last full read
    observed: tuple[list[dict], list[dict]] | None = None  # (Deployments, pods) as last read or applied
    ref_cache: dict[tuple[str, str], dict | None] = field(default_factory=dict)
    secrets_checked: dict[str, float] = field(default_factory=dict)  # Secret -> monotonic time of its last GET
    next_sync: float = 0.0  # monotonic time of the next periodic sync
    last_apply: float = 0.0
    retry_at: float = 0.0  # after a refused apply, no tick-driven sync before this (monotonic)
    period: int = DEFAULT_SYNC_SECONDS
    refs: set[tuple[str, str]] = field(default_factory=set)  # (kind, name) of the referenced objects
    scrapes: dict[str, EngineScrape] = field(default_factory=dict)  # last good scrape per pod
    tokens: dict[str, TokenReading] = field(default_factory=dict)
    tokens_per_second: float | None = None
    scaling: ScalingStatus | None = None  # the last status.scaling written
    last_status: dict = field(default_factory=dict)  # the fields of our last status write, as written
    spot_due: float = float("inf")  # monotonic time a drain wants its next step (a Wait, a backoff)
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # set by the watch events that make work
    overlay: Overlay = field(default_factory=Overlay)  # our writes the indexes do not show yet
    versions: dict[str, str] = field(default_factory=dict)  # Service / PDB resourceVersion as last applied
    applied_generations: dict[str, int] = field(default_factory=dict)  # Deployment -> generation our apply returned
    last_active: datetime | None = None  # minReplicas 0: when a request was last in flight or held
