"""SpotPool: which nodes are Spot, which on-demand, how replicas split, and how reclaim is announced.

Cluster-scoped: a cluster admin describes the node pools once; LLMServices in any namespace
reference it. The split rule, like the AWS Auto Scaling "on-demand base + percentage above
base" it mirrors: the first `onDemandBase` replicas are on-demand, and at most
`maxSpotShare` percent of the rest go to spot.
The default interruption signals cover what real clusters emit today (see DEFAULT_SIGNALS).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from .base import ApiModel
from .cel import Rule, cel_rules
from .common import Condition, LabelValue, NodePlacement, ObjectMeta, conditions_field
from .resource import CrdInfo, PrinterColumn

SignalSource = Literal["NodeTaint", "NodeLabel", "NodeAnnotation", "NodeEvent", "PodCondition"]


class SpotNodes(NodePlacement):
    """The spot nodes. A node selector is required: without one, "spot" pods would land anywhere."""

    node_selector: dict[str, LabelValue] = Field(
        description="Node labels that identify spot nodes, e.g. karpenter.sh/capacity-type: spot.",
        min_length=1,
        max_length=32,
    )


class Fallback(ApiModel):
    """Moving spot replicas to on-demand nodes when spot capacity is missing, and back."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            Rule(
                "self.returnAfterSeconds >= self.pendingSeconds",
                "spec.fallback.returnAfterSeconds must be at least spec.fallback.pendingSeconds, "
                "or replicas flap between spot and on-demand",
                field_path=".returnAfterSeconds",
            ),
        )
    )

    pending_seconds: int = Field(
        120,
        description="A spot pod Pending (unschedulable) this long moves its replica to on-demand.",
        ge=1,
        le=3600,
    )
    return_after_seconds: int = Field(
        300,
        description="After spot capacity returns (nodes Ready and schedulable this long), fallen-back replicas move back to spot.",
        ge=1,
        le=86400,
    )


class TimestampSource(ApiModel):
    """Where an interruption's time is written, and whether it is the deadline or the notice time."""

    source: Literal["NodeLabel", "NodeAnnotation"] = Field(description="The kind of node metadata holding the time.")
    key: str = Field(description="Label or annotation key.", min_length=1, max_length=316)
    format: Literal["RFC3339", "UnixSeconds"] = Field(
        "RFC3339", description="RFC3339 timestamp, or seconds since the epoch (label values cannot hold ':')."
    )
    marks: Literal["Deadline", "Notice"] = Field(
        "Deadline",
        description="Deadline: the node goes away at this time. Notice: the notice was given then; the deadline is noticeSeconds later.",
    )


class InterruptionSignal(ApiModel):
    """One way a cluster announces that a node is about to be reclaimed (or may be soon)."""

    source: SignalSource = Field(
        description=(
            "NodeTaint, NodeLabel, NodeAnnotation: metadata on the node. NodeEvent: an Event about the node, "
            "matched by reason. PodCondition: a condition on the engine pod, matched by type."
        )
    )
    key: str = Field(
        description="Taint, label or annotation key; the Event reason; or the pod condition type.",
        min_length=1,
        max_length=316,
    )
    value: str | None = Field(
        None,
        description="When set, only this value matches (taint/label/annotation value, or the pod condition's reason).",
        max_length=1024,
    )
    advisory: bool = Field(
        False,
        description="Advisory signals (rebalance recommendations) start replacement capacity early but drain nothing.",
    )
    notice_seconds: int = Field(
        120,
        description="Time from the signal to the node's end when no timestamp says otherwise.",
        ge=1,
        le=86400,
    )
    timestamp_from: TimestampSource | None = Field(
        None, description="Where the node records the deadline or notice time, when it does."
    )


def _signal(source: SignalSource, key: str, notice: int, **kw: Any) -> InterruptionSignal:
    return InterruptionSignal(source=source, key=key, notice_seconds=notice, **kw)


# What real clusters emit. Notice times are the clouds' documented minimums.
DEFAULT_SIGNALS: tuple[InterruptionSignal, ...] = (
    # aws-node-termination-handler: taint on the 2-minute notice; its action-time label is the notice time.
    _signal(
        "NodeTaint", "aws-node-termination-handler/spot-itn", 120,
        timestamp_from=TimestampSource(
            source="NodeLabel", key="aws-node-termination-handler/action-time", format="UnixSeconds", marks="Notice"
        ),
    ),
    # Karpenter: the disruption taint, and its SpotInterrupted event on the node.
    _signal("NodeTaint", "karpenter.sh/disrupted", 120),
    _signal("NodeEvent", "SpotInterrupted", 120),
    # AKS node auto-drain: Azure Spot eviction gives at least 30 s.
    _signal("NodeTaint", "remediator.kubernetes.azure.com/unschedulable", 30),
    # GKE: the termination taint and graceful node shutdown's pod condition; only ~15 s for pods.
    _signal("NodeTaint", "cloud.google.com/impending-node-termination", 15),
    _signal("PodCondition", "DisruptionTarget", 15, value="TerminationByKubelet"),
    # Any agent (e.g. llmfleet's node agent) may write the deadline itself.
    _signal(
        "NodeAnnotation", "llmfleet.dev/interruption-deadline", 120,
        timestamp_from=TimestampSource(
            source="NodeAnnotation", key="llmfleet.dev/interruption-deadline", format="RFC3339", marks="Deadline"
        ),
    ),
    # Advisory: capacity may go soon; bring up replacements, drain nothing.
    _signal("NodeTaint", "aws-node-termination-handler/rebalance-recommendation", 120, advisory=True),
    _signal("NodeEvent", "SpotRebalanceRecommendation", 120, advisory=True),
)


class Interruption(ApiModel):
    """How interruption notices are recognised."""

    signals: list[InterruptionSignal] = Field(
        default_factory=lambda: [s.model_copy() for s in DEFAULT_SIGNALS],
        description="Signals to watch. The default covers AWS (termination handler), Karpenter, AKS, GKE and the llmfleet annotation.",
        max_length=32,
    )


class SpotPoolSpec(ApiModel):
    """The desired placement rules of a SpotPool."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            Rule(
                "!has(self.onDemand) || !has(self.onDemand.nodeSelector) "
                "|| self.spot.nodeSelector != self.onDemand.nodeSelector",
                "spec.spot.nodeSelector and spec.onDemand.nodeSelector must differ, or spot and on-demand "
                "replicas land on the same nodes",
                field_path=".onDemand",
            ),
            Rule(
                "!has(self.onDemand) || !has(self.onDemand.nodeSelector) || "
                "!self.spot.nodeSelector.all(k, k in self.onDemand.nodeSelector "
                "&& self.onDemand.nodeSelector[k] == self.spot.nodeSelector[k])",
                "spec.onDemand.nodeSelector must not contain spec.spot.nodeSelector: every node it selects "
                "would be a spot node, which on-demand replicas are kept off, so they could never schedule",
                field_path=".onDemand.nodeSelector",
            ),
        )
    )

    spot: SpotNodes = Field(description="The spot nodes: nodeSelector (required) and the tolerations they need.")
    on_demand: NodePlacement = Field(
        default_factory=lambda: NodePlacement.model_validate({}),
        description="The on-demand nodes; empty means any node the spot selector does not force.",
    )
    on_demand_base: int = Field(
        1,
        description="Replicas that always stay on on-demand nodes, so an interruption never takes the whole service.",
        ge=0,
        le=1000,
    )
    max_spot_share: int = Field(
        100,
        description="Maximum percentage of the replicas above onDemandBase placed on spot (rounded down).",
        ge=0,
        le=100,
    )
    drain_deadline_margin_seconds: int = Field(
        10,
        description="Safety margin before a node's deadline: evictions are timed so pods end this long before it.",
        ge=0,
        le=600,
    )
    fallback: Fallback = Field(
        default_factory=lambda: Fallback.model_validate({}), description="Fallback to on-demand when spot is missing."
    )
    interruption: Interruption = Field(
        default_factory=lambda: Interruption.model_validate({}), description="Interruption signals."
    )

    @model_validator(mode="after")
    def _distinct_pools(self) -> SpotPoolSpec:
        if self.on_demand.node_selector and self.on_demand.node_selector == self.spot.node_selector:
            raise ValueError("spec.spot.nodeSelector and spec.onDemand.nodeSelector must differ")
        if self.on_demand.node_selector and self.spot.node_selector.items() <= self.on_demand.node_selector.items():
            raise ValueError("spec.onDemand.nodeSelector must not contain spec.spot.nodeSelector "
                             "(on-demand replicas could never schedule)")
        if self.fallback.return_after_seconds < self.fallback.pending_seconds:
            raise ValueError("spec.fallback.returnAfterSeconds must be at least spec.fallback.pendingSeconds")
        return self


MAX_INTERRUPTED_NODES = 256  # status.interruptedNodes lists at most this many; interruptedNodeCount has them all


class InterruptedNode(ApiModel):
    """A node with a pending interruption notice, kept so a restarted operator resumes its drains."""

    name: str = Field(description="Node name.", max_length=253)
    signal: str = Field(description="The signal that matched (source/key).", max_length=400)
    seen_at: datetime | None = Field(None, description="When the operator saw the signal.")
    deadline: datetime | None = Field(None, description="When the node is expected to go away.")
    advisory: bool | None = Field(None, description="True for a rebalance recommendation.")


class SpotPoolStatus(ApiModel):
    """What the operator observed of the pool."""

    observed_generation: int | None = Field(
        None, description="The metadata.generation the status reflects.", ge=0, le=2**63 - 1
    )
    spot_nodes: int | None = Field(None, description="Nodes matching the spot selector.", ge=0, le=100000)
    on_demand_nodes: int | None = Field(None, description="Nodes matching the on-demand selector.", ge=0, le=100000)
    interruptions_seen: int | None = Field(None, description="Interruption notices handled since creation.", ge=0, le=2**63 - 1)
    pods_drained: int | None = Field(None, description="Engine pods drained because of a notice.", ge=0, le=2**63 - 1)
    requests_cut: int | None = Field(
        None, description="Requests cut by drains: those the engine estimated to need longer than the grace their pod "
        "was stopped with, counted when the eviction or delete is issued (0 is the goal).", ge=0, le=2**63 - 1
    )
    interrupted_nodes: list[InterruptedNode] = Field(
        default_factory=list, max_length=MAX_INTERRUPTED_NODES,
        description=f"Nodes with a notice being handled now: the {MAX_INTERRUPTED_NODES} with the earliest deadlines.",
    )
    interrupted_node_count: int | None = Field(
        None, description="How many nodes have a notice now, all of them (interruptedNodes lists at most 256).",
        ge=0, le=1000000,
    )
    conditions: list[Condition] = conditions_field(
        "Ready, and NoticeTooShort when a matched signal's notice is shorter than drain needs (e.g. GKE's ~15 s)."
    )


class SpotPool(ApiModel):
    """A SpotPool object as read from the API server."""

    model_config = ConfigDict(extra="ignore")

    api_version: Literal["llmfleet.dev/v1alpha1"] = "llmfleet.dev/v1alpha1"
    kind: Literal["SpotPool"] = "SpotPool"
    metadata: ObjectMeta = Field(default_factory=lambda: ObjectMeta.model_validate({}))
    spec: SpotPoolSpec
    status: SpotPoolStatus = Field(default_factory=lambda: SpotPoolStatus.model_validate({}))


CRD = CrdInfo(
    kind="SpotPool",
    plural="spotpools",
    scope="Cluster",
    short_names=("spotpool",),
    spec_model=SpotPoolSpec,
    status_model=SpotPoolStatus,
    description="Spot and on-demand node pools, the replica split between them, and how interruptions are announced.",
    printer_columns=(
        PrinterColumn("Spot Nodes", ".status.spotNodes", "integer", "Nodes matching the spot selector."),
        PrinterColumn("On-Demand Nodes", ".status.onDemandNodes", "integer", "Nodes matching the on-demand selector."),
        PrinterColumn("Base", ".spec.onDemandBase", "integer", "Replicas always on on-demand.", priority=1),
        PrinterColumn("Max Spot %", ".spec.maxSpotShare", "integer", "Maximum spot share above the base.", priority=1),
        PrinterColumn("Interruptions", ".status.interruptionsSeen", "integer", "Notices handled."),
        PrinterColumn("Drained", ".status.podsDrained", "integer", "Pods drained."),
        PrinterColumn("Cut", ".status.requestsCut", "integer", "Requests cut by a kill."),
    ),
)
