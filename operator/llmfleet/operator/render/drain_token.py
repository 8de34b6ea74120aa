"""The drain credential of one LLMService: derived, never stored by the operator.

    token = base64url(HMAC-SHA256(drain key, "llmfleet-drain-token/v1" NUL namespace NUL name))

The operator holds one drain key (a chart-made Secret mounted into its pod). From it it
derives each service's token when it applies the service's Secret and when it POSTs
/drain, so it never reads a Secret back (its RBAC has create and patch on Secrets, no get)
and a restart needs no state. A tenant who can read Secrets in its own namespace learns its
own services' tokens only: HMAC keeps the key and every other service's token out of reach.

The Secret is mounted read-only into the embedded engine's pods (render/pod.py); the engine
(`--drain-token-file`) and its preStop hook (`llmfleet-engine drain --token-file`) read it.
vLLM pods get none: they have no /drain, their preStop only sleeps.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from llmfleet.operator.api.llmservice import LLMService

from .labels import object_meta
from .paths import DRAIN_TOKEN_KEY

SECRET_ROLE_LABEL = "llmfleet.dev/secret"
DRAIN_TOKEN_ROLE = "drain-token"
_CONTEXT = b"llmfleet-drain-token/v1"


def derive_drain_token(key: bytes, namespace: str, name: str) -> str:
    if len(key) < 16:
        raise ValueError("the drain key must be at least 16 bytes")
    mac = hmac.new(key, b"\0".join((_CONTEXT, namespace.encode(), name.encode())), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def drain_secret_name(name: str) -> str:
    return f"{name}-drain-token"


def uses_drain_token(service: LLMService) -> bool:
    """Only the embedded engine has /drain."""
    return service.spec.engine.kind == "embedded"


def render_drain_secret(service: LLMService, token: str) -> dict[str, Any]:
    meta = object_meta(service, drain_secret_name(service.metadata.name))
    meta["labels"] = {**meta["labels"], SECRET_ROLE_LABEL: DRAIN_TOKEN_ROLE}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "Opaque",
        # `data`, not stringData: the API server never stores stringData, so server-side apply
        # would see it as a change at every apply.
        "data": {DRAIN_TOKEN_KEY: base64.b64encode(token.encode()).decode()},
    }
