"""Autoscaling decisions as pure functions of plain data (no Kubernetes client here).

| module             | question it answers                                               |
| ------------------ | ----------------------------------------------------------------- |
| metrics            | what is one pod's metric value, and is its sample stale?          |
| replica_calculator | how many replicas does the metric ask for? (HPA replica_calculator)|
| behavior           | stabilization windows and Pods/Percent rate limits                |
| schedule           | which minReplicas/maxReplicas are in force now?                   |
| decision           | recommend_replicas: the whole sync step, with history and reasons |
| deletion_cost      | which pods should a scale-down remove first?                      |
"""

from llmfleet.operator.scaling.decision import ScaleDecision, merge_conditions, recommend_replicas
from llmfleet.operator.scaling.deletion_cost import POD_DELETION_COST_ANNOTATION, pod_deletion_costs
from llmfleet.operator.scaling.metrics import EngineSample, fresh_value, is_stale, pod_metric_value
from llmfleet.operator.scaling.replica_calculator import PodMetric, calculate_replicas
from llmfleet.operator.scaling.schedule import bounds_in_force, window_in_force

__all__ = [
    "POD_DELETION_COST_ANNOTATION",
    "EngineSample",
    "PodMetric",
    "ScaleDecision",
    "bounds_in_force",
    "calculate_replicas",
    "fresh_value",
    "is_stale",
    "merge_conditions",
    "pod_deletion_costs",
    "pod_metric_value",
    "recommend_replicas",
    "window_in_force",
]
