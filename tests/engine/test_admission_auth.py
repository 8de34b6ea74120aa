"""Drain states and token buckets, on a fake clock."""

from __future__ import annotations

import pytest
from llmfleet.engine.admission import Admission
from llmfleet.engine.auth import ApiKeys, TokenBuckets
from llmfleet.engine.errors import ModelLoadError, RateLimited, Unauthorized, Unavailable


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_admission_states():
    clock = Clock()
    a = Admission(drain_grace_seconds=5, clock=clock)
    with pytest.raises(Unavailable, match="loading"):
        a.check()
    a.loaded = True
    a.check()
    assert a.ready
    a.start_drain()
    assert not a.ready and a.accepting()
    clock.t += 4.9
    a.check()
    clock.t += 0.2
    with pytest.raises(Unavailable) as e:
        a.check()
    assert e.value.code == "draining" and e.value.retry_after >= 1
    a.start_drain()  # idempotent: the grace does not restart
    assert not a.accepting()


def test_sigterm_refuses_at_once():
    a = Admission(5)
    a.loaded = True
    a.terminating = True
    with pytest.raises(Unavailable, match="shutting down"):
        a.check()


def test_token_bucket_refills_over_time():
    clock = Clock()
    b = TokenBuckets(per_minute=60, clock=clock)
    b.take("k", 50)
    with pytest.raises(RateLimited) as e:
        b.take("k", 20)
    assert e.value.retry_after == pytest.approx(10, abs=0.01)
    b.take("other", 50)  # per key
    clock.t += 10
    b.take("k", 20)
    with pytest.raises(RateLimited):
        b.take("k", 61)  # can never fit


def test_api_keys(tmp_path):
    f = tmp_path / "keys"
    f.write_text("sk-1\n\n# comment\nsk-2\n")
    keys = ApiKeys(str(f))
    assert keys.check("Bearer sk-2") == "sk-2"
    for bad in (None, "", "Bearer", "Basic sk-1", "Bearer sk-3"):
        with pytest.raises(Unauthorized):
            keys.check(bad)
    assert ApiKeys(None).check(None) == ""
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(ModelLoadError, match="no keys"):
        ApiKeys(str(tmp_path / "empty"))
    with pytest.raises(ModelLoadError, match="cannot read"):
        ApiKeys(str(tmp_path / "missing"))
