"""controller.kubernetes.io/pod-deletion-cost from in-flight requests.

On scale-down the ReplicaSet controller deletes pods with the lowest deletion cost first
(among pods of equal readiness), so the cost is the pod's in-flight request count: the
least busy pods go first and the fewest requests have to drain. The annotation value is
an int32 written as a decimal string.
"""

from __future__ import annotations

from collections.abc import Mapping

POD_DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"

_INT32_MAX = 2**31 - 1


def pod_deletion_costs(pods_inflight: Mapping[str, float]) -> dict[str, str]:
    """{pod name: annotation value}; more requests in flight → costlier to delete."""
    costs = {}
    for pod, inflight in pods_inflight.items():
        # Gauges arrive as floats; a negative or NaN reading is treated as idle.
        value = int(inflight) if inflight == inflight and inflight > 0 else 0
        costs[pod] = str(min(value, _INT32_MAX))
    return costs
