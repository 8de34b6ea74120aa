"""The operator's drain key: the secret every service's drain token is derived from.

Read from a file (the chart mounts a Secret it made once and keeps across upgrades) and
re-read when the file changes, so a rotated key reaches a running operator; the next apply
of each service then rotates its token Secret, and the engines re-read their token files.
Without a file (a development run) a random key per process: drain tokens then change
with every operator restart, and until the kubelet refreshes a pod's token file (about a
minute) the operator's POST /drain is refused and the pod drains by its preStop hook only.
"""

from __future__ import annotations

import logging
import os
import secrets

from llmfleet.operator.render.drain_token import derive_drain_token

log = logging.getLogger("llmfleet.operator")
DRAIN_KEY_ENV = "LLMFLEET_DRAIN_KEY_FILE"


class DrainKey:
    def __init__(self, path: str | None = None):
        self.path = path
        self._stamp: tuple | None = None
        self._key = secrets.token_bytes(32)
        if path and not os.path.exists(path):  # an optional Secret volume nobody filled
            log.warning("drain key file %s does not exist", path)
            self.path = path = None
        if path:
            self._key = self._read(first=True)
        else:
            log.warning("no drain key file: a random drain key; drain tokens change when the operator restarts")

    def _read(self, first: bool = False) -> bytes:
        assert self.path is not None
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            if stamp == self._stamp:
                return self._key
            with open(self.path, "rb") as f:
                key = f.read().strip()
            if len(key) < 16:
                raise ValueError("the drain key must be at least 16 bytes")
        except (OSError, ValueError) as exc:
            if first:
                raise ValueError(f"{self.path}: {exc}") from None
            log.warning("cannot re-read the drain key; keeping the last one: %s", exc)
            return self._key
        self._stamp = stamp
        return key

    def token(self, namespace: str, name: str) -> str:
        """The drain token of LLMService namespace/name."""
        if self.path:
            self._key = self._read()
        return derive_drain_token(self._key, namespace, name)
