"""Whether the engine admits a new request: loading, serving, draining, terminating.

| state       | /ready | new requests                                   |
| ----------- | ------ | ---------------------------------------------- |
| loading     | 503    | 503 (model not loaded yet)                     |
| serving     | 200    | admitted                                       |
| draining    | 503    | admitted for `grace` seconds, then 503 + Retry-After |
| terminating | 503    | 503 at once (SIGTERM)                          |

A drain is followed by SIGTERM (the preStop hook's, or the operator's eviction). One that
is not within `expiry` seconds of the last POST /drain heals itself: the engine turns
ready and admits again, so a drain sent by mistake (or by a caller the pod is not
replaced for) cannot leave a live pod out of service for good. SIGTERM is one-way.
Admitted requests always run to completion, streams included.
"""

from __future__ import annotations

import time

from .errors import Unavailable


class Admission:
    def __init__(self, drain_grace_seconds: float, clock=time.monotonic, drain_expiry_seconds: float = 120.0):
        self.grace = drain_grace_seconds
        self.expiry = drain_expiry_seconds
        self.clock = clock
        self.loaded = False
        self.drain_started: float | None = None
        self.drain_renewed: float | None = None  # the last POST /drain
        self.terminating = False

    @property
    def draining(self) -> bool:
        return self.drain_started is not None or self.terminating

    @property
    def ready(self) -> bool:
        return self.loaded and not self.draining

    def start_drain(self) -> None:
        """Start draining, or renew a drain under way (its grace does not restart)."""
        now = self.clock()
        if self.drain_started is None:
            self.drain_started = now
        self.drain_renewed = now

    def expire_drain(self) -> bool:
        """Undo a drain that no SIGTERM followed within `expiry`; True when it was undone now."""
        if self.terminating or self.drain_renewed is None or self.clock() - self.drain_renewed < self.expiry:
            return False
        self.drain_started = self.drain_renewed = None
        return True

    def accepting(self) -> bool:
        if not self.loaded or self.terminating:
            return False
        return self.drain_started is None or self.clock() - self.drain_started < self.grace

    def check(self) -> None:
        """Raise Unavailable with the reason when a new request must be refused."""
        if not self.loaded:
            raise Unavailable("the model is still loading", retry_after=5.0, code="loading")
        if self.terminating:
            raise Unavailable("the server is shutting down", retry_after=1.0, code="shutting_down")
        if not self.accepting():
            raise Unavailable("the server is draining; retry on another replica", retry_after=1.0,
                              code="draining")
