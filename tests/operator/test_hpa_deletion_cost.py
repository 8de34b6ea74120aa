"""pod_deletion_costs: the least busy pods go first on scale-down."""

from llmfleet.operator.scaling import POD_DELETION_COST_ANNOTATION, pod_deletion_costs


def test_costs_follow_in_flight_requests():
    costs = pod_deletion_costs({"idle": 0, "busy": 12, "some": 3.0})
    assert costs == {"idle": "0", "busy": "12", "some": "3"}
    assert min(costs, key=lambda pod: int(costs[pod])) == "idle"


def test_costs_are_int32_strings():
    costs = pod_deletion_costs({"huge": 1e12, "negative": -1, "nan": float("nan")})
    assert costs == {"huge": str(2**31 - 1), "negative": "0", "nan": "0"}


def test_annotation_name():
    assert POD_DELETION_COST_ANNOTATION == "controller.kubernetes.io/pod-deletion-cost"
