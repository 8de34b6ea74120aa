"""The requests this router holds per service, for the operator to see the moment they change.

A service with no ready replica (scaled to zero, or starting) gets its requests held
(proxy.py); those held requests are what scales it from zero. The operator learns of
them by a long poll (`GET /demand?after=<token>`, app.py): the answer comes as soon as
the counts differ from what the token names, or after `wait` seconds with the same
counts. So the operator knows of a held request within a round trip, not at its next
scrape, and the router needs no write access anywhere (it pushes nothing; the operator,
which already lists the router pods, holds the connection).

The token is the router's instance id and a version bumped on every change, so a router
that restarted (version from 0 again) never matches an old token.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import uuid

MAX_WAIT_SECONDS = 60.0


class HeldDemand:
    def __init__(self) -> None:
        self.instance = uuid.uuid4().hex[:12]
        self.version = 0
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()  # (namespace, service) -> held
        self._changed = asyncio.Event()

    @property
    def token(self) -> str:
        return f"{self.instance}.{self.version}"

    def __getitem__(self, service: tuple[str, str]) -> int:
        return self.counts[service]

    def add(self, service: tuple[str, str], n: int) -> None:
        self.counts[service] += n
        if self.counts[service] <= 0:
            del self.counts[service]
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()  # wakes every waiting poll; later ones wait on the new event

    def snapshot(self) -> dict:
        return {"token": self.token,
                "held": [{"namespace": ns, "service": name, "requests": n}
                         for (ns, name), n in sorted(self.counts.items())]}

    async def wait(self, after: str, seconds: float) -> dict:
        """The counts once they differ from what `after` names, or after `seconds` as they are."""
        if after == self.token:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(max(seconds, 0.0), MAX_WAIT_SECONDS))
        return self.snapshot()
