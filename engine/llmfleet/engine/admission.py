"""Whether the engine admits a new request: loading, serving, draining, terminating.

| state       | /ready | new requests                                   |
| ----------- | ------ | ---------------------------------------------- |
| loading     | 503    | 503 (model not loaded yet)                     |
| serving     | 200    | admitted                                       |
| draining    | 503    | admitted for `grace` seconds, then 503 + Retry-After |
| terminating | 503    | 503 at once (SIGTERM)                          |

Draining is one-way: a drained pod is about to go away. Admitted requests always
run to completion, streams included.
"""

from __future__ import annotations

import time

from .errors import Unavailable


class Admission:
    def __init__(self, drain_grace_seconds: float, clock=time.monotonic):
        self.grace = drain_grace_seconds
        self.clock = clock
        self.loaded = False
        self.drain_started: float | None = None
        self.terminating = False

    @property
    def draining(self) -> bool:
        return self.drain_started is not None or self.terminating

    @property
    def ready(self) -> bool:
        return self.loaded and not self.draining

    def start_drain(self) -> None:
        if self.drain_started is None:
            self.drain_started = self.clock()

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
