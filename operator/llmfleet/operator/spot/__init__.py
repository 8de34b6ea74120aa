"""Spot capacity: interruption signals, the on-demand/spot split and the drain plan (pure functions).

| module  | question it answers                                                              |
| ------- | -------------------------------------------------------------------------------- |
| signals | which nodes are about to go, by when; is a cloud's notice too short to drain?    |
| split   | how many replicas on on-demand and on spot; when to fall back and come back      |
| drain   | what to do next for one pod on a reclaimed node; what the autoscaler counts      |
| agent   | the node agent: EC2 metadata notices → Node annotation (I/O; not for the handler) |

A handler reads nodes, pods and events, calls these, applies the actions and writes the
state they return into annotations and status (docs/spot.md, "What survives a restart").
"""

from llmfleet.operator.spot.drain import after_eviction, clear_advisory, plan_advisory, plan_drain
from llmfleet.operator.spot.drain_state import (
    Action,
    Annotate,
    Delete,
    DrainMarks,
    DrainPlan,
    EngineDrain,
    Evict,
    PodDrain,
    PostDrain,
    RecordEvent,
    Surge,
    Wait,
)
from llmfleet.operator.spot.fleet_pods import (
    deployment_replicas,
    is_leaving,
    replicas_without_surge,
    serving_pods,
    surge_by_capacity,
)
from llmfleet.operator.spot.notice import IgnoredSignal, Notice, SignalScan
from llmfleet.operator.spot.pool_notices import (
    NoticeCheck,
    check_notice_length,
    first_seen_from_status,
    interrupted_nodes_status,
)
from llmfleet.operator.spot.signals import detect_interruptions, scan_signals
from llmfleet.operator.spot.split import (
    FallbackState,
    Split,
    SpotCapacity,
    observe_spot_capacity,
    split_replicas,
    target_split,
)

__all__ = [
    "Action",
    "Annotate",
    "Delete",
    "DrainMarks",
    "DrainPlan",
    "EngineDrain",
    "Evict",
    "FallbackState",
    "IgnoredSignal",
    "Notice",
    "NoticeCheck",
    "PodDrain",
    "PostDrain",
    "RecordEvent",
    "SignalScan",
    "Split",
    "SpotCapacity",
    "Surge",
    "Wait",
    "after_eviction",
    "check_notice_length",
    "clear_advisory",
    "deployment_replicas",
    "detect_interruptions",
    "first_seen_from_status",
    "interrupted_nodes_status",
    "is_leaving",
    "observe_spot_capacity",
    "plan_advisory",
    "plan_drain",
    "replicas_without_surge",
    "scan_signals",
    "serving_pods",
    "split_replicas",
    "surge_by_capacity",
    "target_split",
]
