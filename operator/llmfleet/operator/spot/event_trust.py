"""Which Events about Nodes count as interruption evidence (no tenant can have written them), what
is kept of each, and when it happened."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .notice import parse_rfc3339

# Where the API server stores Events about cluster-scoped objects, and the only namespace a
# Node notice is read from: core/v1 validation refuses an Event with an empty
# involvedObject.namespace anywhere else (events.k8s.io also allows kube-system; Karpenter
# and client-go's recorders write to default).
TRUSTED_EVENT_NAMESPACE = "default"
SUMMARY_TEXT_MAX = 253  # names, uids and times in a kept Event summary are cut to this


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _event_node(event: Mapping[str, Any]) -> str | None:
    obj = event.get("involvedObject") or event.get("regarding") or {}
    return obj.get("name") if obj.get("kind") == "Node" else None


def trusted_node_event(event: Mapping[str, Any]) -> bool:
    """An Event about a Node that no tenant can have written: stored in `default` with a
    cluster-scoped involvedObject (no namespace) that names the Node's uid. A tenant may
    create Events in its own namespace, but the API server then requires
    involvedObject.namespace to be that namespace (see the table in spot/signals.py)."""
    about = event.get("involvedObject") or event.get("regarding") or {}
    return (
        about.get("kind") == "Node"
        and not about.get("namespace")
        and bool(about.get("name"))
        and bool(about.get("uid"))
        and _meta(event).get("namespace") == TRUSTED_EVENT_NAMESPACE
    )


def _text(value: object) -> str | None:
    return value[:SUMMARY_TEXT_MAX] if isinstance(value, str) and value else None


def event_summary(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the signal scan reads of a trusted Node Event (reason, node name and uid, times),
    each string cut to SUMMARY_TEXT_MAX; None for an Event that is not trusted. The message,
    annotations and managed fields are dropped: a kept Event costs a few hundred bytes."""
    if not trusted_node_event(event):
        return None
    meta = _meta(event)
    about = event.get("involvedObject") or event.get("regarding") or {}
    summary = {
        "metadata": {k: _text(meta.get(k)) for k in ("name", "namespace", "uid", "creationTimestamp")},
        "reason": _text(event.get("reason")),
        "involvedObject": {"kind": "Node", "name": _text(about.get("name")), "uid": _text(about.get("uid"))},
        **{k: _text(event.get(k)) for k in ("eventTime", "lastTimestamp", "firstTimestamp")},
    }
    last_observed = _text((event.get("series") or {}).get("lastObservedTime"))
    if last_observed:
        summary["series"] = {"lastObservedTime": last_observed}
    return summary


def _event_time(event: Mapping[str, Any]) -> datetime | None:
    for key in ("eventTime", "lastTimestamp", "firstTimestamp"):
        value = parse_rfc3339(event.get(key))
        if value is not None:
            return value
    series = event.get("series") or {}
    return parse_rfc3339(series.get("lastObservedTime")) or parse_rfc3339(
        _meta(event).get("creationTimestamp")
    )
