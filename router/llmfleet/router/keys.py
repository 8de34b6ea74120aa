"""API keys: a service's Secret holds the keys its clients send as `Authorization: Bearer <key>`,
one per line (the engine's --api-key-file format: blank lines and #-comments ignored).

The router checks the key before routing (so a tenant without the key cannot reach another
tenant's model, nor wake it from zero), and forwards the header unchanged so the engine checks
it again."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping

from .errors import Unauthorized


def keys_from_secret(secret: Mapping, key: str) -> tuple[str, ...]:
    """The keys in one entry of a Secret (wire form: base64 in `data`, or plain `stringData`)."""
    data = (secret.get("data") or {}).get(key)
    if data is not None:
        text = base64.b64decode(data).decode("utf-8", errors="replace")
    else:
        text = (secret.get("stringData") or {}).get(key) or ""
    return tuple(ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#"))


def bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def accepts(keys: tuple[str, ...] | None, authorization: str | None) -> bool:
    """True when the request may use a service with these keys (None: the service needs none)."""
    if keys is None:
        return True
    token = bearer(authorization).encode()
    # every key compared in constant time, so the timing says nothing about which one matched
    return bool(token) and sum(hmac.compare_digest(k.encode(), token) for k in keys) > 0


def check(keys: tuple[str, ...] | None, authorization: str | None) -> None:
    if keys is None:
        return
    if not bearer(authorization):
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    if not accepts(keys, authorization):
        raise Unauthorized("invalid API key")
