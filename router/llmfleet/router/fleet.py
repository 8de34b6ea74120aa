"""What the router knows of the fleet: services by served name, their replicas, and each
replica's load. Discovery writes it, the metrics poller refreshes loads, the proxy reads it.

A replica is in rotation only while all of these hold (read from the Pod itself, so a drain
takes effect on the watch event, not after EndpointSlice propagation):

| check                                   | why                                                    |
| --------------------------------------- | ------------------------------------------------------ |
| phase Running, condition Ready=True     | the engine answers /ready: model loaded, not draining  |
| no deletionTimestamp                    | rollout, scale-down or eviction: the pod is leaving    |
| no llmfleet.dev/drain-started annotation| the operator drains it (spot notice, node going away)  |
| an IP and the `http` port               | something to connect to                                |
| its /metrics does not say draining      | a drain the watch has not shown yet                    |
| not in cooldown                         | it just refused or failed a request from this router   |
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .picker import Candidate

log = logging.getLogger("llmfleet.router")

ENGINE_APP_LABEL = ("app.kubernetes.io/name", "llmfleet-engine")
SERVICE_LABEL = "llmfleet.dev/service"
DRAIN_STARTED = "llmfleet.dev/drain-started"  # written by the operator's spot drain (spot/drain.py)
DEFAULT_PORT = 8000


@dataclass(frozen=True)
class SecretRef:
    name: str
    key: str


@dataclass(frozen=True)
class ServiceInfo:
    """One LLMService as the router needs it."""

    namespace: str
    name: str
    served_name: str
    created: str = ""  # creationTimestamp: the older of two services with one served name wins
    key_ref: SecretRef | None = None

    @property
    def id(self) -> tuple[str, str]:
        return (self.namespace, self.name)


def service_from_object(obj: Mapping) -> ServiceInfo | None:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    name, namespace = meta.get("name"), meta.get("namespace")
    if not name or not namespace:
        return None
    model = spec.get("model") or {}
    ref = spec.get("apiKeySecretRef") or None
    return ServiceInfo(
        namespace=namespace, name=name, served_name=model.get("servedName") or name,
        created=meta.get("creationTimestamp") or "",
        key_ref=SecretRef(ref.get("name", ""), ref.get("key", "")) if ref else None,
    )


@dataclass(frozen=True)
class Replica:
    """One engine pod of a service, whether or not in rotation."""

    namespace: str
    pod: str
    service: str
    url: str  # http://<pod IP>:<port>, "" without an IP
    serving: bool  # ready and not leaving (the first four checks above)


def replica_from_pod(pod: Mapping) -> Replica | None:
    """The pod as a replica; None when it is not an llmfleet engine pod of some service."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    labels = meta.get("labels") or {}
    service = labels.get(SERVICE_LABEL)
    if not service or labels.get(ENGINE_APP_LABEL[0]) != ENGINE_APP_LABEL[1]:
        return None
    ip = status.get("podIP") or ""
    port = DEFAULT_PORT
    for container in spec.get("containers") or []:
        for p in container.get("ports") or []:
            if p.get("name") == "http" and p.get("containerPort"):
                port = int(p["containerPort"])
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    leaving = meta.get("deletionTimestamp") is not None or DRAIN_STARTED in (meta.get("annotations") or {})
    serving = bool(ip) and status.get("phase") == "Running" and ready and not leaving
    return Replica(namespace=meta.get("namespace", ""), pod=meta.get("name", ""), service=service,
                   url=f"http://{ip}:{port}" if ip else "", serving=serving)


@dataclass
class Load:
    """One replica's load: the last /metrics reading plus this router's own traffic since."""

    in_flight: int = 0  # requests this router has open on the replica now
    scraped: float | None = None  # waiting + running at the last reading
    in_flight_at_scrape: int = 0
    scraped_at: float = 0.0  # monotonic time of the last reading
    kv_usage: float = 0.0
    draining: bool = False
    cooldown_until: float = 0.0

    def estimate(self) -> float:
        if self.scraped is None:
            return float(self.in_flight)
        # the reading already counts what this router had open then; add only the change since
        return max(float(self.in_flight), self.scraped + self.in_flight - self.in_flight_at_scrape)


@dataclass
class Fleet:
    services: dict[tuple[str, str], ServiceInfo] = field(default_factory=dict)
    replicas: dict[tuple[str, str], Replica] = field(default_factory=dict)  # (namespace, pod) -> replica
    loads: dict[str, Load] = field(default_factory=dict)  # url -> load
    # API keys per service: None = the service needs none; an empty tuple = its Secret could not be
    # read (every request refused: failing open would hand the model to anyone)
    keys: dict[tuple[str, str], tuple[str, ...] | None] = field(default_factory=dict)
    key_errors: dict[tuple[str, str], str] = field(default_factory=dict)
    # Services whose key Secret this router may not read (403: router.readSecrets=false, or no
    # grant in that namespace): their engines check the key the router forwards (keys_checked_by_engine)
    engine_checks_keys: set[tuple[str, str]] = field(default_factory=set)
    clock: Callable[[], float] = time.monotonic
    _changed: asyncio.Event | None = None

    # --- writes (discovery, poller) ----------------------------------------------------------
    def set_service(self, info: ServiceInfo) -> None:
        self.services[info.id] = info
        if info.key_ref is None:
            self.keys[info.id] = None
        self._notify()

    def remove_service(self, namespace: str, name: str) -> None:
        self.services.pop((namespace, name), None)
        self.keys.pop((namespace, name), None)
        self.engine_checks_keys.discard((namespace, name))
        self._notify()

    def set_keys(self, service: tuple[str, str], keys: tuple[str, ...] | None, error: str = "") -> None:
        self.keys[service] = keys
        self.engine_checks_keys.discard(service)
        if error:
            if self.key_errors.get(service) != error:  # once per problem, not once per refresh
                log.warning("the API keys of %s/%s cannot be read: %s", *service, error)
            self.key_errors[service] = error
        else:
            self.key_errors.pop(service, None)

    def keys_checked_by_engine(self, service: tuple[str, str]) -> None:
        """This router may not read the service's key Secret: its engines check the key."""
        self.keys.pop(service, None)
        self.key_errors.pop(service, None)
        self.engine_checks_keys.add(service)

    def set_replica(self, replica: Replica) -> None:
        self.replicas[(replica.namespace, replica.pod)] = replica
        if replica.url:
            self.loads.setdefault(replica.url, Load())
        self._notify()

    def remove_replica(self, namespace: str, pod: str) -> None:
        gone = self.replicas.pop((namespace, pod), None)
        if gone and gone.url and not any(r.url == gone.url for r in self.replicas.values()):
            self.loads.pop(gone.url, None)
        self._notify()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_changed(self, timeout: float) -> None:
        """Until the next change of services or replicas, at most `timeout` seconds."""
        if self._changed is None:
            self._changed = asyncio.Event()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            pass

    # --- reads (proxy) -------------------------------------------------------------------------
    def services_for(self, served_name: str) -> list[ServiceInfo]:
        """Services serving this name, oldest first (ties by namespace/name, so routers agree)."""
        found = [s for s in self.services.values() if s.served_name == served_name]
        return sorted(found, key=lambda s: (s.created or "~", s.namespace, s.name))

    def has_pods(self, service: ServiceInfo) -> bool:
        """Whether the service has any engine pod (starting, serving or leaving): not at zero."""
        return any(r.namespace == service.namespace and r.service == service.name for r in self.replicas.values())

    def serving_replicas(self, service: ServiceInfo) -> list[Replica]:
        return [r for r in self.replicas.values()
                if r.namespace == service.namespace and r.service == service.name and r.serving and r.url]

    def candidates(self, service: ServiceInfo) -> list[Candidate]:
        """Replicas in rotation now, with their load."""
        now = self.clock()
        out = []
        for r in self.serving_replicas(service):
            load = self.loads.setdefault(r.url, Load())
            if load.draining or load.cooldown_until > now:
                continue
            out.append(Candidate(r.url, load.estimate(), load.kv_usage))
        return out

    def cool_down(self, url: str, seconds: float) -> None:
        load = self.loads.get(url)
        if load is not None:
            load.cooldown_until = self.clock() + seconds
