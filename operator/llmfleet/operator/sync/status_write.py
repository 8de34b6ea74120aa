"""Whether a sync's status is worth a write: the merge patch, less a write that would only say
"a sync ran" while the copy in the API server is still fresh.

Every periodic sync of an autoscaled service moves `status.scaling.lastSyncTime` and the
timestamp of the newest recommendation (compact_recommendations keeps the newest always),
even when nothing was decided. Writing that alone would cost one API request per service per
sync period in steady state. So a patch that changes nothing but those timestamps is held
back until the written `lastSyncTime` is SCALING_REFRESH_SECONDS old; any other change
(a condition, a count, the metric, a decision, a recommendation's replica count) is written
at once, and with it the current timestamps.

Meanwhile the operator decides from its own memory of status.scaling (newer than the
written copy: sync.plan's plan_autoscale prefers it), so decisions are unchanged. What the
refresh bounds is a restart: the history the next operator reads is at most
SCALING_REFRESH_SECONDS plus one sync period behind, so right after a restart a
scale-down stabilization window can be that much shorter (docs/operator.md).
Conditions keep their lastTransitionTime across syncs (merge_conditions), so they never
make a patch of their own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .status_fields import merge_patch

SCALING_REFRESH_SECONDS = 60.0


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _without_sync_times(scaling: Any) -> Any:
    """status.scaling less what every sync moves: lastSyncTime and the recommendations' timestamps."""
    if not isinstance(scaling, dict):
        return scaling
    out = {k: v for k, v in scaling.items() if k != "lastSyncTime"}
    recs = scaling.get("recommendations")
    if isinstance(recs, list):
        out["recommendations"] = [{k: v for k, v in r.items() if k != "timestamp"} if isinstance(r, dict) else r
                                  for r in recs]
    return out


def only_sync_times(old: dict, new: dict) -> bool:
    """Whether `new` differs from `old` in status.scaling's sync timestamps and nothing else."""
    patch = merge_patch(old, new)
    if set(patch) != {"scaling"}:
        return False
    return _without_sync_times(old.get("scaling")) == _without_sync_times(new.get("scaling"))


def status_patch(old: dict, new: dict, now: datetime, refresh_seconds: float = SCALING_REFRESH_SECONDS) -> dict:
    """The merge patch to write for `new` over `old` (the status as last written); {} for none."""
    patch = merge_patch(old, new)
    if not patch or not only_sync_times(old, new):
        return patch
    written = _parse_time((old.get("scaling") or {}).get("lastSyncTime"))
    if written is None or (now - written).total_seconds() >= refresh_seconds:
        return patch
    return {}
