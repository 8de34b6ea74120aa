"""The node agent: reads the EC2 instance metadata service (IMDS) on its node and writes what
it finds onto the Node, where the operator's signal scan picks it up.

| IMDS answer (IMDSv2, token first)                       | on the Node                                   |
| ------------------------------------------------------- | --------------------------------------------- |
| spot/instance-action 200 {"action", "time"}             | annotation llmfleet.dev/interruption-deadline = time (RFC 3339), |
|                                                         | llmfleet.dev/interruption-action = action, taint llmfleet.dev/interruption:NoSchedule |
| spot/instance-action 404                                | the three above removed, if this agent set them |
| events/recommendations/rebalance 200 {"noticeTime"}     | annotation llmfleet.dev/rebalance-recommendation = noticeTime |
| events/recommendations/rebalance 404                    | that annotation removed                       |
| timeout, 5xx, garbage, token refused                    | nothing changes (an error is logged)          |

Invariant: only a definite answer changes the Node; a flaky metadata service never clears a
notice. The taint keeps replacement pods off the node; the operator needs only the annotation.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import httpx
from llmfleet.operator.spot.notice import format_rfc3339, parse_rfc3339

log = logging.getLogger("llmfleet.node-agent")

DEFAULT_IMDS_URL = "http://169.254.169.254"
TOKEN_PATH = "/latest/api/token"
INSTANCE_ACTION_PATH = "/latest/meta-data/spot/instance-action"
REBALANCE_PATH = "/latest/meta-data/events/recommendations/rebalance"
TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"

DEADLINE_ANNOTATION = "llmfleet.dev/interruption-deadline"
ACTION_ANNOTATION = "llmfleet.dev/interruption-action"  # also marks the deadline as this agent's
REBALANCE_ANNOTATION = "llmfleet.dev/rebalance-recommendation"
INTERRUPTION_TAINT = "llmfleet.dev/interruption"

ACTIONS = ("terminate", "stop", "hibernate")
DEFAULT_INTERVAL_SECONDS = 5.0  # AWS suggests checking every 5 s; the notice is 2 minutes
DEFAULT_TIMEOUT_SECONDS = 2.0
TOKEN_TTL_SECONDS = 21600


class ImdsError(Exception):
    """The metadata service gave no usable answer; `reason` is one CamelCase word."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()  # "could not tell", as opposed to None: "IMDS says nothing is pending"


@dataclass(frozen=True)
class InstanceAction:
    action: str
    time: datetime


@dataclass(frozen=True)
class Observation:
    instance_action: InstanceAction | None | _Unknown
    rebalance: datetime | None | _Unknown
    errors: tuple[str, ...] = ()


def parse_instance_action(body: str) -> InstanceAction:
    try:
        doc = json.loads(body)
    except ValueError:
        raise ImdsError("MalformedInstanceAction", f"not JSON: {body[:80]!r}") from None
    if not isinstance(doc, dict) or doc.get("action") not in ACTIONS:
        raise ImdsError("MalformedInstanceAction", f"no action among {ACTIONS}: {body[:80]!r}")
    when = parse_rfc3339(doc.get("time"))
    if when is None:
        raise ImdsError("MalformedInstanceAction", f"time is not RFC 3339: {doc.get('time')!r}")
    return InstanceAction(doc["action"], when)


def parse_rebalance(body: str) -> datetime:
    try:
        doc = json.loads(body)
    except ValueError:
        raise ImdsError("MalformedRebalance", f"not JSON: {body[:80]!r}") from None
    when = parse_rfc3339(doc.get("noticeTime")) if isinstance(doc, dict) else None
    if when is None:
        raise ImdsError("MalformedRebalance", f"no RFC 3339 noticeTime: {body[:80]!r}")
    return when


class ImdsClient:
    """IMDSv2: PUT a session token, then GET with it; a 401 renews the token once."""

    def __init__(
        self,
        base_url: str = DEFAULT_IMDS_URL,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        # No proxies from the environment: IMDS is link-local and must be reached directly.
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, trust_env=False)
        self._clock = clock
        self._token: str | None = None
        self._token_expires = 0.0

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
        try:
            return self._http.request(method, path, headers=headers)
        except httpx.TimeoutException:
            raise ImdsError("Timeout", f"{method} {path} timed out") from None
        except httpx.HTTPError as exc:
            raise ImdsError("Unreachable", f"{method} {path}: {exc}") from None

    def token(self) -> str:
        if self._token is None or self._clock() >= self._token_expires:
            resp = self._request("PUT", TOKEN_PATH, {TOKEN_TTL_HEADER: str(TOKEN_TTL_SECONDS)})
            if resp.status_code != 200 or not resp.text.strip():
                raise ImdsError("TokenRefused", f"PUT {TOKEN_PATH}: HTTP {resp.status_code}")
            self._token = resp.text.strip()
            self._token_expires = self._clock() + TOKEN_TTL_SECONDS - 60
        return self._token

    def get(self, path: str) -> httpx.Response:
        resp = self._request("GET", path, {TOKEN_HEADER: self.token()})
        if resp.status_code == 401:  # the token expired early (e.g. the instance was stopped)
            self._token = None
            resp = self._request("GET", path, {TOKEN_HEADER: self.token()})
        return resp

    def _document(self, path: str) -> str | None:
        resp = self.get(path)
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise ImdsError("HttpError", f"GET {path}: HTTP {resp.status_code}")
        return resp.text

    def instance_action(self) -> InstanceAction | None:
        body = self._document(INSTANCE_ACTION_PATH)
        return None if body is None else parse_instance_action(body)

    def rebalance(self) -> datetime | None:
        body = self._document(REBALANCE_PATH)
        return None if body is None else parse_rebalance(body)

    def observe(self) -> Observation:
        errors: list[str] = []
        action: InstanceAction | None | _Unknown = UNKNOWN
        rebalance: datetime | None | _Unknown = UNKNOWN
        try:
            action = self.instance_action()
        except ImdsError as exc:
            errors.append(str(exc))
        try:
            rebalance = self.rebalance()
        except ImdsError as exc:
            errors.append(str(exc))
        return Observation(action, rebalance, tuple(errors))


def desired_node_patch(node: Mapping, obs: Observation) -> dict | None:
    """The merge patch that makes the Node say what IMDS said, or None if it already does.

    Carries metadata.resourceVersion when it rewrites spec.taints (a list is replaced whole),
    so a concurrent taint change by someone else fails with 409 instead of being lost."""
    meta, spec = node.get("metadata") or {}, node.get("spec") or {}
    annotations = meta.get("annotations") or {}
    taints = list(spec.get("taints") or [])
    has_taint = any(t.get("key") == INTERRUPTION_TAINT for t in taints)
    changes: dict[str, str | None] = {}
    new_taints: list[dict] | None = None

    action = obs.instance_action
    if isinstance(action, InstanceAction):
        wanted = {DEADLINE_ANNOTATION: format_rfc3339(action.time), ACTION_ANNOTATION: action.action}
        changes.update({k: v for k, v in wanted.items() if annotations.get(k) != v})
        if not has_taint:
            new_taints = taints + [
                {"key": INTERRUPTION_TAINT, "value": action.action, "effect": "NoSchedule"}
            ]
    elif action is None and ACTION_ANNOTATION in annotations:  # the notice this agent wrote is gone
        changes.update({DEADLINE_ANNOTATION: None, ACTION_ANNOTATION: None})
        if has_taint:
            new_taints = [t for t in taints if t.get("key") != INTERRUPTION_TAINT]

    rebalance = obs.rebalance
    if isinstance(rebalance, datetime):
        if annotations.get(REBALANCE_ANNOTATION) != format_rfc3339(rebalance):
            changes[REBALANCE_ANNOTATION] = format_rfc3339(rebalance)
    elif rebalance is None and REBALANCE_ANNOTATION in annotations:
        changes[REBALANCE_ANNOTATION] = None

    if not changes and new_taints is None:
        return None
    patch: dict = {"metadata": {}}
    if changes:
        patch["metadata"]["annotations"] = changes
    if new_taints is not None:
        patch["spec"] = {"taints": new_taints}
        if meta.get("resourceVersion"):
            patch["metadata"]["resourceVersion"] = meta["resourceVersion"]
    return patch


class NodeClient(Protocol):
    def get_node(self, name: str) -> dict: ...

    def patch_node(self, name: str, patch: dict) -> None: ...


class KubeNodeClient:
    """NodeClient over the Kubernetes API with the pod's service account (get, patch nodes)."""

    def __init__(self) -> None:
        from kubernetes import client, config

        config.load_incluster_config()
        self._api = client.CoreV1Api()
        self._serialize = client.ApiClient().sanitize_for_serialization

    def get_node(self, name: str) -> dict:
        return self._serialize(self._api.read_node(name))

    def patch_node(self, name: str, patch: dict) -> None:
        self._api.patch_node(name, patch)


@dataclass(frozen=True)
class PollResult:
    observation: Observation
    patch: dict | None
    error: str | None = None  # the node API failed (the IMDS errors are in observation.errors)


def poll_once(node_name: str, imds: ImdsClient, nodes: NodeClient) -> PollResult:
    obs = imds.observe()
    for error in obs.errors:
        log.warning("metadata service: %s", error)
    try:
        patch = desired_node_patch(nodes.get_node(node_name), obs)
        if patch is not None:
            nodes.patch_node(node_name, patch)
            log.info("node %s patched: %s", node_name, json.dumps(patch, sort_keys=True))
    except Exception as exc:  # the API server is down, a 409 on taints: try again next poll
        log.warning("node %s: %s", node_name, exc)
        return PollResult(obs, None, str(exc))
    return PollResult(obs, patch)


def run_agent(
    node_name: str,
    imds: ImdsClient,
    nodes: NodeClient,
    interval: float = DEFAULT_INTERVAL_SECONDS,
    stop: threading.Event | None = None,
) -> None:
    """Poll every `interval` seconds until `stop` is set."""
    stop = stop or threading.Event()
    log.info("watching %s for node %s every %.1fs", imds._http.base_url, node_name, interval)
    while not stop.is_set():
        poll_once(node_name, imds, nodes)
        stop.wait(interval)
