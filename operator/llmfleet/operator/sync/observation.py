"""What one LLMService sync knows of the world: plain data, read by the handlers, planned on by plan_sync.

| field            | read from                                                           |
| ---------------- | ------------------------------------------------------------------- |
| body, old_status | the watched LLMService; old_status merges in our own last status write |
| refused          | why the spec is outside the admin's allow-lists (then nothing else is read) |
| policy_obj ...   | the referenced AutoscalePolicy / SpotPool objects (None: not found), Secrets that are missing |
| deployments/pods | the service's owned Deployments and its pods                        |
| scrapes, tokens  | the ready engines' last good /metrics and the fleet's token rate    |
| spot / notices   | a pooled service's SpotView (nodes, notices, capacity); an unpooled one's notices (None: no drain work) |
| engines          | the /drain answers of the pods that drain (sync.drains.needs_engine) |
| periodic, apply  | a sync period is due (scrape and autoscale); apply even when the counts held are right |
| held             | the requests llmfleet-router holds for the service (scale from zero), on periodic syncs |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from llmfleet.operator.adapters.scrape import EngineScrape
from llmfleet.operator.api.scaling_status import ScalingStatus
from llmfleet.operator.spot.drain_state import EngineDrain
from llmfleet.operator.spot.notice import Notice

if TYPE_CHECKING:  # the pooled view: scan + notices + capacity + nodes
    from llmfleet.operator.sync.spot_view import SpotView


@dataclass
class Observation:
    body: dict
    old_status: dict = field(default_factory=dict)
    policy_obj: dict | None = None
    pool_obj: dict | None = None
    missing_secrets: list[str] = field(default_factory=list)
    refused: str | None = None  # the spec is outside the admin's allow-lists (policy/admission.py): why
    deployments: list[dict] = field(default_factory=list)
    pods: list[dict] = field(default_factory=list)
    scrapes: Mapping[str, EngineScrape] = field(default_factory=dict)
    tokens_per_second: float | None = None
    last_scaling: ScalingStatus | None = None  # our own last status.scaling, maybe newer than the body's
    policy_users: frozenset[str] = frozenset()  # other services known to use the same policy
    periodic: bool = False
    apply: bool = False
    was_blocked: bool = False  # the last sync waited on a reference: apply once it is there
    spot: SpotView | None = None
    notices: Mapping[str, Notice] | None = None  # without a pool: None when no pod has drain work
    engines: Mapping[str, EngineDrain | None] = field(default_factory=dict)
    router_url: str | None = None  # llmfleet-router's base URL (status.router)
    held: int = 0  # requests llmfleet-router holds for this service (scale from zero)
    last_active: datetime | None = None  # minReplicas 0: when a request was last in flight or held

    @property
    def namespace(self) -> str:
        return self.body["metadata"]["namespace"]

    @property
    def name(self) -> str:
        return self.body["metadata"]["name"]
