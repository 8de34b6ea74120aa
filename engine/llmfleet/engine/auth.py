"""Credentials (API keys, the drain token), re-read when their mounted file changes, and per-key
token-bucket rate limits."""

from __future__ import annotations

import hmac
import logging
import os
import pathlib
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from .errors import Forbidden, ModelLoadError, RateLimited, Unauthorized

log = logging.getLogger("llmfleet.engine")
T = TypeVar("T")


class WatchedFile(Generic[T]):
    """A file mounted from a Secret, re-read when it changes.

    The kubelet updates a Secret volume by swapping a symlink to a new directory, so the
    file's (inode, mtime, size) changes; one stat per check notices it. A change that
    cannot be read or parsed (a half-written file, a key list left empty) keeps the last
    good value: a rotation never turns authentication off.
    """

    def __init__(self, path: str, parse: Callable[[str], T], what: str):
        self.path = path
        self.parse = parse
        self.what = what
        self._stamp: tuple | None = None
        self.value: T = self._read(first=True)

    def _read(self, first: bool = False) -> T:
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            if stamp == self._stamp:
                return self.value
            value = self.parse(pathlib.Path(self.path).read_text())
        except OSError as e:
            if first:
                raise ModelLoadError(f"{self.path}: cannot read {self.what} ({e.strerror})") from None
            log.warning("cannot re-read %s; keeping the last one", self.what, extra={"error": str(e)})
            return self.value
        except ValueError as e:
            if first:
                raise ModelLoadError(f"{self.path}: {e}") from None
            log.warning("%s changed but is not usable; keeping the last one", self.what, extra={"error": str(e)})
            return self.value
        if not first:
            log.info("%s reloaded", self.what, extra={"path": self.path})
        self._stamp = stamp
        return value

    def current(self) -> T:
        self.value = self._read()
        return self.value


def _parse_keys(text: str) -> list[str]:
    keys = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if not keys:
        raise ValueError("API key file has no keys")
    return keys


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" else ""


def _matches(candidates: list[str], token: str) -> str | None:
    # compare against every candidate in constant time so timing reveals nothing about which matched
    matched = [k for k in candidates if hmac.compare_digest(k.encode(), token.encode())]
    return matched[0] if matched else None


class ApiKeys:
    """Accepted keys, one per line in a file (blank lines and #-comments ignored), re-read on change."""

    def __init__(self, path: str | None):
        self._file: WatchedFile[list[str]] | None = WatchedFile(path, _parse_keys, "API key file") if path else None

    @property
    def enabled(self) -> bool:
        return self._file is not None

    @property
    def keys(self) -> list[str]:
        return self._file.current() if self._file else []

    def check(self, authorization: str | None) -> str:
        """Return the key the request authenticated with, or raise Unauthorized."""
        if self._file is None:
            return ""
        token = _bearer(authorization)
        if not token:
            raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
        key = _matches(self._file.current(), token)
        if key is None:
            raise Unauthorized("invalid API key")
        return key


MIN_DRAIN_TOKEN_CHARS = 16


def _parse_drain_token(text: str) -> str:
    token = text.strip()
    if len(token) < MIN_DRAIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise ValueError(f"the drain token must be one word of at least {MIN_DRAIN_TOKEN_CHARS} characters")
    return token


class DrainToken:
    """The credential for POST /drain: only the operator and the pod's own preStop hook hold it.

    An inference API key does not drain, and neither does the peer address (behind a
    sidecar or a node-local proxy every caller is loopback). Without a token file the
    engine cannot be drained over HTTP at all; SIGTERM still stops it gracefully.
    """

    def __init__(self, path: str | None):
        self._file: WatchedFile[str] | None = (
            WatchedFile(path, _parse_drain_token, "drain token file") if path else None)

    def check(self, authorization: str | None) -> None:
        if self._file is None:
            raise Forbidden("drain over HTTP is disabled: the server was started without --drain-token-file")
        token = _bearer(authorization)
        if not token:
            raise Unauthorized("drain needs the drain token: send `Authorization: Bearer <drain token>`",
                               code="invalid_drain_token")
        if _matches([self._file.current()], token) is None:
            raise Unauthorized("invalid drain token", code="invalid_drain_token")


class TokenBuckets:
    """Each key may spend `per_minute` tokens per minute, with bursts up to that amount."""

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.per_minute = per_minute
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, cost: int) -> None:
        if self.per_minute <= 0:
            return
        rate = self.per_minute / 60.0
        with self._lock:
            now = self.clock()
            level, last = self._buckets.get(key, (float(self.per_minute), now))
            level = min(float(self.per_minute), level + (now - last) * rate)
            if cost > self.per_minute:
                raise RateLimited(f"request needs {cost} tokens but the limit is {self.per_minute} per minute",
                                  retry_after=60.0)
            if level < cost:
                self._buckets[key] = (level, now)
                raise RateLimited(f"rate limit of {self.per_minute} tokens per minute exceeded",
                                  retry_after=max(1.0, (cost - level) / rate))
            self._buckets[key] = (level - cost, now)
