"""Per-pod metric values from engine gauges, and the stale-sample rule."""

from datetime import UTC, datetime, timedelta

import pytest
from llmfleet.operator.api.metric import MetricType
from llmfleet.operator.scaling import EngineSample, fresh_value, is_stale, pod_metric_value

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SAMPLE = EngineSample(timestamp=NOW, requests_waiting=3, requests_running=5, kv_cache_usage=0.7)


@pytest.mark.parametrize(
    "metric,expected",
    [(MetricType.QUEUE_DEPTH, 3), (MetricType.IN_FLIGHT, 8), (MetricType.KV_CACHE_USAGE, 0.7)],
)
def test_pod_metric_value(metric, expected):
    assert pod_metric_value(metric, SAMPLE) == expected


def test_a_sample_is_stale_after_two_sync_periods():
    assert not is_stale(NOW - timedelta(seconds=30), NOW, 15)
    assert is_stale(NOW - timedelta(seconds=31), NOW, 15)


def test_fresh_value_treats_stale_and_absent_samples_as_missing():
    old = EngineSample(NOW - timedelta(seconds=60), 3, 5, 0.7)
    assert fresh_value(MetricType.QUEUE_DEPTH, SAMPLE, NOW, 15) == 3
    assert fresh_value(MetricType.QUEUE_DEPTH, old, NOW, 15) is None
    assert fresh_value(MetricType.QUEUE_DEPTH, None, NOW, 15) is None
