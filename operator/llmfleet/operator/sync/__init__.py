"""One LLMService sync as observe -> plan -> execute: the plain data and the pure decisions.

`Observation` is what the handlers read; `plan_sync` decides everything a sync does
(`SyncPlan`); `plan_status` turns the plan and what its writes returned into status.
"""

from .drains import DrainStep, needs_engine, plan_drains, with_marks
from .observation import Observation
from .plan import SyncPlan, plan_sync
from .spot_view import UNPOOLED, SpotView, observe_pool
from .status_fields import StatusPlan, failed_status, merge_patch, plan_status

__all__ = ["UNPOOLED", "DrainStep", "Observation", "SpotView", "StatusPlan", "SyncPlan", "failed_status",
           "merge_patch", "needs_engine", "observe_pool", "plan_drains", "plan_status", "plan_sync", "with_marks"]
