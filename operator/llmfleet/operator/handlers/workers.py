"""When each LLMService's worker syncs: its memory, the watch events that wake it, and how long
it may sleep meanwhile (no polling: a flag set by an event, or a sync period or drain step due).

The Reconciler (handlers/reconciler.py) is one of these; kopf's event handlers call the
wake-ups, the service's daemon calls wait_for_work between ticks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from llmfleet.operator import metrics

from .memory import ServiceMemory
from .spot import SpotRuntime

COALESCE_SECONDS = 0.5  # after a wake-up, let the rest of a burst of watch events arrive first


class ServiceWorkers:
    """The per-service scheduling state the Reconciler keeps (fields set by the Reconciler)."""

    services: dict[tuple[str, str], ServiceMemory]
    monotonic: Callable[[], float]
    spot: SpotRuntime | None

    def memory(self, namespace: str, name: str) -> ServiceMemory:
        key = (namespace, name)
        if key not in self.services:
            self.services[key] = ServiceMemory()
            metrics.MANAGED_SERVICES.set(len(self.services))
        return self.services[key]

    def mark_status(self, namespace: str, name: str) -> None:
        """A child changed: refresh this service's status at the next tick."""
        mem = self.services.get((namespace, name))
        if mem is not None:
            mem.status_dirty = True
            mem.wake.set()

    def reference_changed(self, kind: str, namespace: str | None, name: str) -> None:
        """An AutoscalePolicy or SpotPool appeared, changed or went: its users re-read it.

        A SpotPool also shapes the rendered pods (placement), so its users re-apply too.
        """
        for (ns, _), mem in self.services.items():
            if (kind, name) in mem.refs and (namespace is None or ns == namespace):
                mem.refs_dirty = True
                if kind == "SpotPool":
                    mem.apply_wanted = True
                mem.wake.set()

    def spot_changed(self) -> None:
        """A Node's taints/labels/annotations/readiness or a Karpenter Event changed: every
        service with a SpotPool re-reads nodes and pods at the next tick; a service without
        one only when one of its pods (as last read) is on a node whose default signals changed
        (a full re-read of every service on every node change would cost 3 requests each)."""
        changed = self.spot.take_changed_nodes() if self.spot is not None else set()
        for mem in self.services.values():
            if any(kind == "SpotPool" for kind, _ in mem.refs) or (changed and mem.observed is not None and any(
                    (p.get("spec") or {}).get("nodeName") in changed for p in mem.observed[1])):
                mem.status_dirty = True
                mem.wake.set()

    def demand_seen(self, namespace: str, name: str) -> None:
        """A router holds more requests for this service (router_demand.py's watch): sync and
        autoscale now rather than at the next period, so a service at zero starts at once."""
        mem = self.services.get((namespace, name))
        if mem is not None:
            mem.next_sync = min(mem.next_sync, self.monotonic())
            mem.wake.set()

    def policy_users(self, namespace: str, policy: str) -> list[str]:
        return sorted(n for (ns, n), m in self.services.items() if ns == namespace and ("AutoscalePolicy", policy) in m.refs)

    def seconds_to_work(self, namespace: str, name: str) -> float:
        """How long the service's worker may sleep: 0 while something is dirty, else until its
        next sync period or drain step (after a refused apply, not before the retry time)."""
        mem = self.services.get((namespace, name))
        if mem is None:
            return 0.0
        mono = self.monotonic()
        if mono < mem.retry_at:
            return mem.retry_at - mono
        if mem.apply_wanted or mem.status_dirty or mem.refs_dirty:
            return 0.0
        return max(0.0, min(mem.next_sync, mem.spot_due) - mono)

    async def wait_for_work(self, namespace: str, name: str, longest: float = 60.0,
                            stop: asyncio.Future | None = None) -> None:
        """Sleep until a watch event wakes the service, its next sync is due, or `stop` is done
        (kopf stops the worker). The flags carry the work; the event only ends the sleep early,
        so a wake-up lost to a race costs nothing."""
        mem = self.memory(namespace, name)
        delay = min(longest, self.seconds_to_work(namespace, name))
        if delay > 0:
            woken = asyncio.ensure_future(mem.wake.wait())
            try:
                done, _ = await asyncio.wait({woken, *([stop] if stop is not None else [])}, timeout=delay,
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:
                woken.cancel()
            if woken in done and (stop is None or not stop.done()):
                await asyncio.sleep(COALESCE_SECONDS)  # a rollout's burst of pod events: one sync
        mem.wake.clear()
