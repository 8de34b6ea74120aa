"""bounds_in_force: schedule windows across time zones, midnight and DST."""

from datetime import UTC, datetime

import pytest
from llmfleet.operator.api.autoscalepolicy import AutoscalePolicySpec
from llmfleet.operator.api.schedule import ScheduleWindow
from llmfleet.operator.scaling import bounds_in_force, window_in_force


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def window(**kw):
    raw = {"name": "w", "minReplicas": 3}
    raw.update(kw)
    return ScheduleWindow.model_validate(raw)


OFFICE = window(daysOfWeek=["Mon", "Tue", "Wed", "Thu", "Fri"], start="09:00", end="17:00")
BERLIN = window(start="09:00", end="17:00", timeZone="Europe/Berlin")
FRIDAY_NIGHT = window(daysOfWeek=["Fri"], start="22:00", end="02:00", timeZone="America/New_York")
# 2026 DST in Europe/Berlin: 29 March 02:00 CET -> 03:00 CEST; 25 October 03:00 CEST -> 02:00 CET.
SKIPPED_HOUR = window(start="02:30", end="04:00", timeZone="Europe/Berlin")
REPEATED_HOUR = window(start="02:00", end="03:00", timeZone="Europe/Berlin")
ALL_DAY_SUNDAY = window(daysOfWeek=["Sun"], start="06:00", end="06:00")

CASES = [
    # (name, window, instant, in force?)
    ("start is inclusive", OFFICE, utc(2026, 3, 2, 9, 0), True),  # Monday
    ("end is exclusive", OFFICE, utc(2026, 3, 2, 17, 0), False),
    ("a day not listed", OFFICE, utc(2026, 3, 7, 12, 0), False),  # Saturday
    ("Berlin winter: 07:30 UTC is 08:30 CET", BERLIN, utc(2026, 1, 15, 7, 30), False),
    ("Berlin winter: 08:30 UTC is 09:30 CET", BERLIN, utc(2026, 1, 15, 8, 30), True),
    ("Berlin summer: 07:30 UTC is 09:30 CEST", BERLIN, utc(2026, 7, 15, 7, 30), True),
    ("Berlin summer: 15:30 UTC is 17:30 CEST", BERLIN, utc(2026, 7, 15, 15, 30), False),
    ("across midnight: Friday 23:00 New York", FRIDAY_NIGHT, utc(2026, 3, 7, 4, 0), True),  # Fri 23:00 EST
    ("across midnight: Saturday 01:00 belongs to Friday", FRIDAY_NIGHT, utc(2026, 3, 7, 6, 0), True),
    ("across midnight: Saturday 02:00 is over", FRIDAY_NIGHT, utc(2026, 3, 7, 7, 0), False),
    ("across midnight: Friday 21:59 not yet", FRIDAY_NIGHT, utc(2026, 3, 7, 2, 59), False),
    ("across midnight: Saturday 23:00 is not a Friday", FRIDAY_NIGHT, utc(2026, 3, 8, 4, 0), False),
    ("across midnight: Monday 01:00 (Sunday not listed)", FRIDAY_NIGHT, utc(2026, 3, 9, 5, 0), False),
    ("spring forward: 01:59 CET, before the gap", SKIPPED_HOUR, utc(2026, 3, 29, 0, 59), False),
    ("spring forward: the clock jumps to 03:00 CEST, inside", SKIPPED_HOUR, utc(2026, 3, 29, 1, 0), True),
    ("spring forward: 04:00 CEST is over", SKIPPED_HOUR, utc(2026, 3, 29, 2, 0), False),
    ("fall back: first 02:30 (CEST)", REPEATED_HOUR, utc(2026, 10, 25, 0, 30), True),
    ("fall back: second 02:30 (CET)", REPEATED_HOUR, utc(2026, 10, 25, 1, 30), True),
    ("fall back: 03:00 CET is over", REPEATED_HOUR, utc(2026, 10, 25, 2, 0), False),
    ("start == end is 24 hours: Sunday 06:00", ALL_DAY_SUNDAY, utc(2026, 3, 8, 6, 0), True),
    ("start == end is 24 hours: Monday 05:59", ALL_DAY_SUNDAY, utc(2026, 3, 9, 5, 59), True),
    ("start == end is 24 hours: Monday 06:00 is over", ALL_DAY_SUNDAY, utc(2026, 3, 9, 6, 0), False),
]


@pytest.mark.parametrize("name,win,instant,expected", CASES, ids=[c[0] for c in CASES])
def test_window_in_force(name, win, instant, expected):
    assert window_in_force(win, instant) is expected


def test_naive_time_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        window_in_force(OFFICE, datetime(2026, 3, 2, 12, 0))


def spec(*schedules):
    return AutoscalePolicySpec.model_validate(
        {
            "minReplicas": 2,
            "maxReplicas": 10,
            "metric": {"targetAverageValue": 4},
            "schedules": list(schedules),
        }
    )


NOON_MONDAY = utc(2026, 3, 2, 12, 0)


def test_no_window_in_force_gives_the_spec_bounds():
    bounds = bounds_in_force(
        spec({"name": "night", "start": "22:00", "end": "06:00", "maxReplicas": 3}), NOON_MONDAY
    )
    assert (bounds.min_replicas, bounds.max_replicas, bounds.active_schedules) == (2, 10, [])


def test_a_window_overrides_only_what_it_sets():
    bounds = bounds_in_force(
        spec({"name": "lunch", "start": "11:00", "end": "14:00", "minReplicas": 6}), NOON_MONDAY
    )
    assert (bounds.min_replicas, bounds.max_replicas, bounds.active_schedules) == (6, 10, ["lunch"])


def test_overlapping_windows_the_highest_wins():
    bounds = bounds_in_force(
        spec(
            {"name": "lunch", "start": "11:00", "end": "14:00", "minReplicas": 6, "maxReplicas": 8},
            {"name": "launch", "start": "00:00", "end": "00:00", "minReplicas": 4, "maxReplicas": 16},
        ),
        NOON_MONDAY,
    )
    assert (bounds.min_replicas, bounds.max_replicas, bounds.active_schedules) == (6, 16, ["lunch", "launch"])


def test_a_window_min_above_the_base_max_lifts_max():
    bounds = bounds_in_force(
        spec({"name": "peak", "start": "11:00", "end": "14:00", "minReplicas": 12}), NOON_MONDAY
    )
    assert (bounds.min_replicas, bounds.max_replicas) == (12, 12)


def test_a_window_max_below_the_base_min_lowers_min():
    bounds = bounds_in_force(
        spec({"name": "quiet", "start": "11:00", "end": "14:00", "maxReplicas": 1}), NOON_MONDAY
    )
    assert (bounds.min_replicas, bounds.max_replicas) == (1, 1)
