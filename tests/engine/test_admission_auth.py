"""Drain states, credentials and token buckets, on a fake clock."""

from __future__ import annotations

import pytest
from llmfleet.engine.admission import Admission
from llmfleet.engine.auth import ApiKeys, DrainToken, TokenBuckets
from llmfleet.engine.errors import Forbidden, ModelLoadError, RateLimited, Unauthorized, Unavailable


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


def test_a_drain_no_sigterm_follows_heals_after_its_expiry():
    clock = Clock()
    a = Admission(drain_grace_seconds=5, clock=clock, drain_expiry_seconds=60)
    a.loaded = True
    a.start_drain()
    clock.t += 30
    assert not a.expire_drain() and not a.ready
    a.start_drain()  # a second POST renews the drain (the operator re-posts while it still drains)
    clock.t += 59
    assert not a.expire_drain()
    with pytest.raises(Unavailable, match="draining"):
        a.check()
    clock.t += 1
    assert a.expire_drain()  # undone once, reported once
    assert not a.expire_drain()
    assert a.ready and not a.draining
    a.check()


def test_sigterm_is_never_undone():
    clock = Clock()
    a = Admission(drain_grace_seconds=5, clock=clock, drain_expiry_seconds=60)
    a.loaded = True
    a.start_drain()
    a.terminating = True
    clock.t += 3600
    assert not a.expire_drain() and not a.ready


def replace_file(path, text: str) -> None:
    """As the kubelet updates a Secret volume: write a new file, swap it in."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    tmp.replace(path)


def test_api_keys_are_reread_when_the_mounted_file_changes(tmp_path):
    f = tmp_path / "keys"
    f.write_text("sk-old\n")
    keys = ApiKeys(str(f))
    assert keys.check("Bearer sk-old") == "sk-old"
    replace_file(f, "sk-new\n")
    assert keys.check("Bearer sk-new") == "sk-new"
    with pytest.raises(Unauthorized):
        keys.check("Bearer sk-old")
    # a rotation caught half-way (empty file, file gone) keeps the last keys: never "no auth"
    replace_file(f, "")
    assert keys.check("Bearer sk-new") == "sk-new"
    f.unlink()
    assert keys.check("Bearer sk-new") == "sk-new"
    with pytest.raises(Unauthorized):
        keys.check(None)


def test_drain_token(tmp_path):
    f = tmp_path / "token"
    f.write_text("a-long-enough-drain-token\n")
    token = DrainToken(str(f))
    token.check("Bearer a-long-enough-drain-token")
    for bad in (None, "", "Bearer", "Bearer sk-an-api-key", "Basic a-long-enough-drain-token"):
        with pytest.raises(Unauthorized):
            token.check(bad)
    replace_file(f, "the-rotated-drain-token\n")
    token.check("Bearer the-rotated-drain-token")
    with pytest.raises(Unauthorized):
        token.check("Bearer a-long-enough-drain-token")
    with pytest.raises(Forbidden, match="--drain-token-file"):
        DrainToken(None).check("Bearer anything-at-all-here")
    f.write_text("short")
    with pytest.raises(ModelLoadError, match="at least 16"):
        DrainToken(str(f))
