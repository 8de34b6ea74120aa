"""Which minReplicas/maxReplicas are in force at a given instant.

A window is in force when the local time in its timeZone lies in [start, end) on one of
its daysOfWeek; a window whose end is earlier than its start crosses midnight and
belongs to the day it starts (Fri 22:00-02:00 covers Saturday 01:00); end == start means
24 hours. Local time comes from zoneinfo, so DST is the wall clock's: on a
spring-forward day a window starting inside the skipped hour starts when the clock
jumps; on a fall-back day the repeated hour is in force twice.

Several windows in force: the highest minReplicas and the highest maxReplicas win
(capacity wins over savings), and max is raised to min if they cross.
"""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from llmfleet.operator.api.autoscalepolicy import AutoscalePolicySpec
from llmfleet.operator.api.scaling_status import BoundsInForce
from llmfleet.operator.api.schedule import ScheduleWindow, Weekday, parse_hh_mm

_WEEKDAYS = list(Weekday)  # index = datetime.weekday()


def window_in_force(window: ScheduleWindow, now: datetime) -> bool:
    """True when `now` (timezone-aware) falls inside the window."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    local = now.astimezone(ZoneInfo(window.time_zone))
    start = time(*parse_hh_mm(window.start))
    end = time(*parse_hh_mm(window.end))
    clock = local.time().replace(tzinfo=None)
    today = _WEEKDAYS[local.weekday()]
    yesterday = _WEEKDAYS[(local.weekday() - 1) % 7]
    days = set(window.days_of_week)
    if start == end:  # a full day from start
        return (today in days and clock >= start) or (yesterday in days and clock < start)
    if start < end:
        return today in days and start <= clock < end
    # Crosses midnight: the evening part is today's window, the morning part yesterday's.
    return (today in days and clock >= start) or (yesterday in days and clock < end)


def bounds_in_force(spec: AutoscalePolicySpec, now: datetime) -> BoundsInForce:
    """minReplicas/maxReplicas at `now`, and the names of the schedules that set them."""
    active = [w for w in spec.schedules if window_in_force(w, now)]
    if not active:
        return BoundsInForce(
            min_replicas=spec.min_replicas, max_replicas=spec.max_replicas, active_schedules=[]
        )
    mins = [w.min_replicas for w in active if w.min_replicas is not None]
    maxes = [w.max_replicas for w in active if w.max_replicas is not None]
    low = max(mins) if mins else spec.min_replicas
    high = max(maxes) if maxes else spec.max_replicas
    # A window that raises min above the base max (or lowers max under the base min)
    # means "exactly this many": the window's number wins over the base one.
    if low > high:
        high = low if mins else high
        low = min(low, high)
    return BoundsInForce(min_replicas=low, max_replicas=high, active_schedules=[w.name for w in active])
