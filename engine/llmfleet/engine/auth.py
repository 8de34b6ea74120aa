"""API keys and per-key token-bucket rate limits."""

from __future__ import annotations

import hmac
import pathlib
import threading
import time

from .errors import ModelLoadError, RateLimited, Unauthorized


class ApiKeys:
    """Accepted keys, one per line in a file (blank lines and #-comments ignored)."""

    def __init__(self, path: str | None):
        self.keys: list[str] = []
        if path:
            try:
                lines = pathlib.Path(path).read_text().splitlines()
            except OSError as e:
                raise ModelLoadError(f"{path}: cannot read API key file ({e.strerror})") from None
            self.keys = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
            if not self.keys:
                raise ModelLoadError(f"{path}: API key file has no keys")

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def check(self, authorization: str | None) -> str:
        """Return the key the request authenticated with, or raise Unauthorized."""
        if not self.enabled:
            return ""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
        # compare against every key in constant time so timing reveals nothing about which matched
        matched = [k for k in self.keys if hmac.compare_digest(k.encode(), token.encode())]
        if not matched:
            raise Unauthorized("invalid API key")
        return matched[0]


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
