"""The world a sync reads, kept by kopf's indexes (`@kopf.index`) from the watches the operator has.

| index                     | key                       | value                                    |
| ------------------------- | ------------------------- | ---------------------------------------- |
| llmfleet_pods_index       | (namespace, service)      | the pod (without managedFields)          |
| llmfleet_deployments_index| (namespace, service)      | the generated Deployment                 |
| llmfleet_policies_index   | (namespace, name)         | the AutoscalePolicy                      |
| llmfleet_pools_index      | name                      | the SpotPool                             |
| llmfleet_nodes_index      | name                      | the Node's brief (handlers/spot.py's node_brief) |

kopf fills every index from its initial list before it runs any other handler, and keeps it
current from the watch; a steady-state sync therefore makes no API read. Secrets have no
index: a watch would stream every Secret's data into the operator and need list/watch on
them; their existence is a metadata-only GET instead (handlers/observe.py), when enabled. Our own writes reach
the index through the watch a moment later: `Overlay` keeps what we wrote to a pod (drain
marks, a deletion) until the index shows it, so a sync in between does not act twice.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

# The kopf index names (handlers/kopf_handlers.py) a Store needs.
INDEXES = ("llmfleet_pods_index", "llmfleet_deployments_index", "llmfleet_policies_index", "llmfleet_pools_index",
           "llmfleet_nodes_index")
OVERLAY_SECONDS = 30.0  # the watch delivers our own writes well within this


class Store(Protocol):
    def pods(self, namespace: str, service: str) -> list[dict]: ...
    def deployments(self, namespace: str, service: str) -> list[dict]: ...
    def get(self, kind: str, namespace: str | None, name: str) -> dict | None: ...


def brief(body: Mapping) -> dict:
    """A watched object as the index keeps it: a plain copy without managedFields."""
    obj = copy.deepcopy(dict(body))
    obj["metadata"] = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return obj


@dataclass
class IndexStore:
    """A Store over kopf's Index objects (mappings of key -> kopf.Store, an iterable of values)."""

    indexes: Mapping[str, Any]

    def _values(self, index: str, key: Any) -> list:
        idx = self.indexes.get(index)
        if idx is None or key not in idx:
            return []
        return list(idx[key])

    def pods(self, namespace: str, service: str) -> list[dict]:
        pods = [copy.deepcopy(p) for p in self._values("llmfleet_pods_index", (namespace, service))]
        return sorted(pods, key=lambda p: p["metadata"]["name"])

    def deployments(self, namespace: str, service: str) -> list[dict]:
        deps = [copy.deepcopy(d) for d in self._values("llmfleet_deployments_index", (namespace, service))]
        return sorted(deps, key=lambda d: d["metadata"]["name"])

    def nodes(self) -> list[dict]:
        """Every Node's brief, as the Node watch left it."""
        idx = self.indexes.get("llmfleet_nodes_index")
        if idx is None:
            return []
        out = []
        for name in list(idx):
            values = list(idx[name])
            if values:
                out.append(copy.deepcopy(values[-1]))
        return out

    def get(self, kind: str, namespace: str | None, name: str) -> dict | None:
        index, key = {"AutoscalePolicy": ("llmfleet_policies_index", (namespace, name)),
                      "SpotPool": ("llmfleet_pools_index", name)}[kind]
        values = self._values(index, key)
        if not values:
            return None
        value = values[-1]
        return copy.deepcopy(value)


@dataclass
class Overlay:
    """What this operator wrote and the index may not show yet: per pod, the annotations
    written and whether it evicted or deleted the pod; the Deployments as applied (a higher
    metadata.generation than the index's copy). An entry the watch never confirms (a hand
    edit undid it) is dropped after OVERLAY_SECONDS."""

    annotations: dict[str, dict[str, str | None]] = field(default_factory=dict)
    deleted: dict[str, str] = field(default_factory=dict)  # pod -> the deletionTimestamp we assumed
    applied: dict[str, dict] = field(default_factory=dict)  # Deployment name -> as the apply returned it
    removed: dict[str, bool] = field(default_factory=dict)  # Deployments we deleted
    since: dict[str, float] = field(default_factory=dict)  # entry -> monotonic time first written

    def expire(self, mono: float) -> None:
        for key in [k for k, t in self.since.items() if mono - t > OVERLAY_SECONDS]:
            kind, name = key.split("/", 1)
            tables: dict[str, dict[str, Any]] = {"pod": self.annotations, "deleted": self.deleted,
                                                 "deployment": self.applied, "removed": self.removed}
            tables[kind].pop(name, None)
            del self.since[key]

    def remember_applied(self, deployments: list[dict], removed: list[str], mono: float) -> None:
        for name in removed:
            self.removed[name] = True
            self.since.setdefault(f"removed/{name}", mono)
        for d in deployments:
            self.applied[d["metadata"]["name"]] = copy.deepcopy(d)
            self.since.setdefault(f"deployment/{d['metadata']['name']}", mono)

    def deployments(self, indexed: list[dict]) -> list[dict]:
        """The index's Deployments, or ours where the index has not seen our apply yet."""
        out = []
        for name in [n for n in self.removed if n not in {d["metadata"]["name"] for d in indexed}]:
            del self.removed[name]  # the watch delivered the deletion
            self.since.pop(f"removed/{name}", None)
        for d in indexed:
            name = d["metadata"]["name"]
            if name in self.removed:
                continue
            mine = self.applied.get(name)
            if mine is not None and int(mine["metadata"].get("generation") or 0) > int(d["metadata"].get("generation") or 0):
                out.append(copy.deepcopy(mine))
                continue
            self.applied.pop(name, None)
            self.since.pop(f"deployment/{name}", None)
            out.append(d)
        known = {d["metadata"]["name"] for d in indexed}
        out.extend(copy.deepcopy(d) for n, d in sorted(self.applied.items()) if n not in known)  # created, not yet seen
        return out

    def remember(self, before: list[dict], after: list[dict], mono: float) -> None:
        old = {p["metadata"]["name"]: p for p in before}
        for pod in after:
            name, meta = pod["metadata"]["name"], pod["metadata"]
            was = (old.get(name) or {}).get("metadata") or {}
            a, b = was.get("annotations") or {}, meta.get("annotations") or {}
            changed = {k: b.get(k) for k in {*a, *b} if a.get(k) != b.get(k)}
            if changed:
                self.annotations[name] = {**self.annotations.get(name, {}), **changed}
                self.since.setdefault(f"pod/{name}", mono)
            if meta.get("deletionTimestamp") and not was.get("deletionTimestamp"):
                self.deleted[name] = meta["deletionTimestamp"]
                self.since.setdefault(f"deleted/{name}", mono)

    def apply(self, pods: list[dict]) -> list[dict]:
        """`pods` from the index with our writes it does not show yet; forget those it shows."""
        live = {p["metadata"]["name"] for p in pods}
        for kind, entries in (("pod", self.annotations), ("deleted", self.deleted)):
            for name in [n for n in entries if n not in live]:  # gone: nothing left to overlay
                del entries[name]
                self.since.pop(f"{kind}/{name}", None)
        for pod in pods:
            meta, name = pod["metadata"], pod["metadata"]["name"]
            wrote = self.annotations.get(name)
            if wrote is not None:
                own = meta.get("annotations") or {}
                if all(own.get(k) == v for k, v in wrote.items()):
                    del self.annotations[name]  # the watch delivered our write
                    self.since.pop(f"pod/{name}", None)
                else:
                    merged = {**own, **wrote}
                    meta["annotations"] = {k: v for k, v in merged.items() if v is not None}
            if name in self.deleted:
                if meta.get("deletionTimestamp"):
                    del self.deleted[name]
                    self.since.pop(f"deleted/{name}", None)
                else:
                    meta["deletionTimestamp"] = self.deleted[name]
        return pods
