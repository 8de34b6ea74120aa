"""Keeps the fleet in step with the cluster: LLMServices, their engine Pods, their key Secrets.

| watched                          | where                                  | what the router learns           |
| -------------------------------- | -------------------------------------- | -------------------------------- |
| LLMServices                      | each configured namespace (or all)     | served name → service, key ref   |
| Pods labelled llmfleet-engine    | same                                   | replicas, readiness, drains      |
| Secret named by apiKeySecretRef  | GET on change and every key_refresh_seconds | the service's API keys (403: its engines check them) |

Pods rather than EndpointSlices: a pod carries the operator's drain mark and its
deletionTimestamp the moment they are written, while an EndpointSlice changes only after
the endpoints controller has seen the pod's readiness flip. Each watch lists, then watches
from the list's resourceVersion, and lists again after 410 Gone or any error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import httpx

from . import kube
from .config import RouterConfig
from .fleet import ENGINE_APP_LABEL, Fleet, ServiceInfo, replica_from_pod, service_from_object
from .keys import keys_from_secret

log = logging.getLogger("llmfleet.router")

LLMSERVICES = "/apis/llmfleet.dev/v1alpha1"
PODS = "/api/v1"


def _path(group: str, plural: str, namespace: str | None) -> str:
    return f"{group}/namespaces/{namespace}/{plural}" if namespace else f"{group}/{plural}"


class Discovery:
    def __init__(self, api: httpx.AsyncClient, fleet: Fleet, config: RouterConfig):
        self.api = api
        self.fleet = fleet
        self.config = config
        self.scopes: list[str | None] = list(config.namespaces) or [None]
        self._listed: set[tuple[str, str | None]] = set()
        self._key_reads: set[asyncio.Task] = set()  # referenced until done (the loop keeps only weak ones)

    def synced(self) -> bool:
        return len(self._listed) == 2 * len(self.scopes)

    async def run(self) -> None:
        jobs = [self._keys_loop()]
        for ns in self.scopes:
            jobs.append(self._list_watch("llmservices", ns, _path(LLMSERVICES, "llmservices", ns), {},
                                         self._services_listed, self._service_event))
            jobs.append(self._list_watch("pods", ns, _path(PODS, "pods", ns),
                                         {"labelSelector": "=".join(ENGINE_APP_LABEL)},
                                         self._pods_listed, self._pod_event))
        await asyncio.gather(*jobs)

    async def _list_watch(self, kind: str, namespace: str | None, path: str, params: dict,
                          on_list: Callable[[str | None, list[dict]], None],
                          on_event: Callable[[str, dict], None]) -> None:
        backoff = 1.0
        while True:
            try:
                items, version = await kube.list_objects(self.api, path, params)
                on_list(namespace, items)
                self._listed.add((kind, namespace))
                backoff = 1.0
                while True:
                    async for event in kube.watch(self.api, path, params, version):
                        obj = event.get("object") or {}
                        version = (obj.get("metadata") or {}).get("resourceVersion") or version
                        if event.get("type") != "BOOKMARK":
                            on_event(event.get("type", ""), obj)
                    await asyncio.sleep(0)  # the server ended the watch: watch again from `version`
            except asyncio.CancelledError:
                raise
            except kube.KubeError as e:
                if e.status == 410:  # the version is too old: list again at once, as kopf does
                    await asyncio.sleep(0)
                else:
                    log.warning("watch of %s in %s failed: %s", kind, namespace or "all namespaces", e)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
            except (httpx.HTTPError, OSError, ValueError) as e:
                log.warning("watch of %s in %s failed: %r", kind, namespace or "all namespaces", e)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    # --- LLMServices ------------------------------------------------------------------------------
    def _services_listed(self, namespace: str | None, items: list[dict]) -> None:
        seen = set()
        for obj in items:
            info = service_from_object(obj)
            if info is not None:
                seen.add(info.id)
                self._set_service(info)
        for sid in [s for s in self.fleet.services if (namespace is None or s[0] == namespace) and s not in seen]:
            self.fleet.remove_service(*sid)

    def _service_event(self, kind: str, obj: dict) -> None:
        info = service_from_object(obj)
        if info is None:
            return
        if kind == "DELETED":
            self.fleet.remove_service(*info.id)
        else:
            self._set_service(info)

    def _set_service(self, info: ServiceInfo) -> None:
        old = self.fleet.services.get(info.id)
        self.fleet.set_service(info)
        if info.key_ref is not None and (old is None or old.key_ref != info.key_ref):
            task = asyncio.get_running_loop().create_task(self._read_keys(info))
            self._key_reads.add(task)
            task.add_done_callback(self._key_reads.discard)

    # --- Pods ---------------------------------------------------------------------------------------
    def _pods_listed(self, namespace: str | None, items: list[dict]) -> None:
        seen = set()
        for pod in items:
            replica = replica_from_pod(pod)
            if replica is not None:
                seen.add((replica.namespace, replica.pod))
                self.fleet.set_replica(replica)
        for rid in [r for r in self.fleet.replicas if (namespace is None or r[0] == namespace) and r not in seen]:
            self.fleet.remove_replica(*rid)

    def _pod_event(self, kind: str, pod: dict) -> None:
        meta = pod.get("metadata") or {}
        if kind == "DELETED":
            self.fleet.remove_replica(meta.get("namespace", ""), meta.get("name", ""))
            return
        replica = replica_from_pod(pod)
        if replica is not None:
            self.fleet.set_replica(replica)

    # --- API keys -------------------------------------------------------------------------------
    async def _read_keys(self, info: ServiceInfo) -> None:
        ref = info.key_ref
        if ref is None:
            return
        try:
            secret = await kube.get(self.api, f"{PODS}/namespaces/{info.namespace}/secrets/{ref.name}")
        except kube.KubeError as e:
            if e.status == 403:  # not granted (router.readSecrets=false): the engine checks the key
                if info.id not in self.fleet.engine_checks_keys:
                    log.info("may not read Secret %s/%s: the engines of %s check its API keys", info.namespace,
                             ref.name, info.name)
                self.fleet.keys_checked_by_engine(info.id)
            else:
                self.fleet.set_keys(info.id, (), f"reading Secret {ref.name}: {e}")
            return
        except (httpx.HTTPError, OSError, ValueError) as e:
            self.fleet.set_keys(info.id, (), f"reading Secret {ref.name}: {e}")
            return
        if self.fleet.services.get(info.id) != info:
            return  # the service changed meanwhile: its own read is under way
        if secret is None:
            self.fleet.set_keys(info.id, (), f"Secret {info.namespace}/{ref.name} not found")
            return
        found = keys_from_secret(secret, ref.key)
        self.fleet.set_keys(info.id, found, "" if found else f"Secret {ref.name} has no keys under {ref.key!r}")

    async def _keys_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.key_refresh_seconds)
            services = [s for s in self.fleet.services.values() if s.key_ref is not None]
            await asyncio.gather(*(self._read_keys(s) for s in services), return_exceptions=True)
