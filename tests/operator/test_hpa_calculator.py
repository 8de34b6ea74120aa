"""The replica calculator, case by case as the HPA's replica_calculator tests read.

Each row: current replicas, the pods (value per ready pod, "missing", "starting",
"terminating"), the target and tolerance → the proposal.
"""

import pytest
from llmfleet.operator.scaling.replica_calculator import PodMetric, calculate_replicas, within_tolerance


def pods(*specs):
    out = []
    for i, spec in enumerate(specs):
        name = f"pod-{i}"
        if spec == "missing":
            out.append(PodMetric(name, ready=True, value=None))
        elif spec == "starting":
            out.append(PodMetric(name, ready=False))
        elif spec == "terminating":
            out.append(PodMetric(name, ready=True, value=0.0, terminating=True))
        else:
            out.append(PodMetric(name, ready=True, value=float(spec)))
    return out


CASES = [
    # (name, current, pods, target, tolerance, expected replicas)
    ("scale up: ceil(ratio x ready)", 3, pods(20, 20, 20), 10, 0.1, 6),
    ("scale down: ceil(ratio x ready)", 4, pods(2, 2, 2, 2), 10, 0.1, 1),
    ("ratio rounds up, never down", 3, pods(12, 12, 13), 10, 0.1, 4),
    ("tolerance is inclusive above: 1.1 keeps", 3, pods(11, 11, 11), 10, 0.1, 3),
    ("tolerance is inclusive below: 0.9 keeps", 3, pods(9, 9, 9), 10, 0.1, 3),
    ("just outside the tolerance scales", 3, pods(11.5, 11.5, 11.5), 10, 0.1, 4),
    ("zero tolerance scales on any change", 4, pods(11, 11, 11, 11), 10, 0.0, 5),
    ("KVCacheUsage: 0.96 over 0.8 target", 2, pods(0.96, 0.96), 0.8, 0.1, 3),
    # Missing metrics, as the HPA: on scale-down the silent pod counts as at target,
    # which damps the scale-down (1 without it).
    ("missing on scale-down counts as target", 4, pods(2, 2, 2, "missing"), 10, 0.1, 2),
    # On scale-up the silent pod counts as 0; here that flips the direction, so keep
    # (ignoring it would propose ceil(1.3 x 1) = 2: a scale-down while overloaded).
    ("missing on scale-up counts as 0, no flip", 3, pods(13, "missing", "missing"), 10, 0.1, 3),
    ("missing on scale-up counts as 0", 2, pods(40, "missing"), 10, 0.1, 4),
    ("missing pods can land within tolerance: keep", 2, pods(8, "missing"), 10, 0.1, 2),
    # Starting pods (model loading) on scale-up count as 0 load: capacity on its way.
    ("starting pods on scale-up count as 0", 4, pods(30, 30, "starting", "starting"), 10, 0.1, 6),
    # ... and never make an overloaded fleet look idle: ceil(1.2 x 2) = 3 would remove a
    # loading pod; with them counted at 0 the direction flips, so keep 4.
    ("starting pods never read as idle", 4, pods(12, 12, "starting", "starting"), 10, 0.1, 4),
    # On scale-down starting pods are left out: the proposal is the ready pods' need.
    ("starting pods left out on scale-down", 4, pods(2, 2, "starting", "starting"), 10, 0.1, 1),
    ("terminating pods are left out", 3, pods(20, 20, "terminating"), 10, 0.1, 4),
]


@pytest.mark.parametrize("name,current,pod_list,target,tolerance,expected", CASES, ids=[c[0] for c in CASES])
def test_calculate_replicas(name, current, pod_list, target, tolerance, expected):
    calc = calculate_replicas(current, pod_list, target, tolerance)
    assert calc is not None
    assert calc.replicas == expected


def test_average_is_over_ready_pods_with_a_metric():
    calc = calculate_replicas(4, pods(2, 4, "missing", "starting"), 10, 0.1)
    assert calc.average == 3
    assert (calc.ready_count, calc.missing, calc.unready) == (2, 1, 1)


@pytest.mark.parametrize(
    "pod_list",
    [pods(), pods("missing", "missing"), pods("starting"), pods("terminating", "missing")],
    ids=["no pods", "all missing", "all starting", "terminating and missing"],
)
def test_no_ready_pod_with_a_metric_is_unavailable(pod_list):
    assert calculate_replicas(2, pod_list, 10, 0.1) is None


def test_within_tolerance_is_inclusive():
    assert within_tolerance(1.1, 0.1)
    assert within_tolerance(11 / 10, 0.1)
    assert within_tolerance(0.9, 0.1)
    assert not within_tolerance(1.1001, 0.1)
