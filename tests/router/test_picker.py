"""The picker: consistent hashing with bounded loads (Mirrokni et al.), as table cases."""

from __future__ import annotations

import collections

import pytest
from llmfleet.router.picker import Candidate, Key, Pick, load_bound, pick, ring_order

NAMES = ("http://10.0.0.1:8000", "http://10.0.0.2:8000", "http://10.0.0.3:8000")
KEY = Key("chat\x00system:You are a helpful assistant.")
FIRST, SECOND, THIRD = ring_order(KEY.value, NAMES)


def cands(**loads: float) -> list[Candidate]:
    """Candidates by ring position: first/second/third = load, optional kv_<pos> = KV usage."""
    pos = {"first": FIRST, "second": SECOND, "third": THIRD}
    return [Candidate(pos[p], loads.get(p, 0.0), loads.get(f"kv_{p}", 0.0)) for p in pos]


@pytest.mark.parametrize(
    ("case", "candidates", "key", "exclude", "expected"),
    [
        ("idle fleet: the key's own replica", cands(), KEY, (), Pick(FIRST, "prefix")),
        ("busy but within 1.25x the mean", cands(first=4, second=3, third=3), KEY, (), Pick(FIRST, "prefix")),
        # a lagging gauge still shows the last request: the prefix stays where its cache is
        ("one stale request on an idle fleet", cands(first=1), KEY, (), Pick(FIRST, "prefix")),
        # total 12, bound ceil(1.25 * 13 / 3) = 6: 6 + 1 > 6, so the walk goes on
        ("over the bound: the next replica on the ring", cands(first=6, second=3, third=3), KEY, (),
         Pick(SECOND, "overflow")),
        ("first two over the bound: the third", cands(first=9, second=9, third=0), KEY, (), Pick(THIRD, "overflow")),
        ("KV cache saturated: passed over", cands(kv_first=0.97), KEY, (), Pick(SECOND, "overflow")),
        ("every replica saturated: least loaded", cands(first=3, second=1, third=2, kv_first=1, kv_second=1,
                                                        kv_third=1), KEY, (), Pick(SECOND, "load")),
        ("retry: the tried replica is skipped", cands(), KEY, {FIRST}, Pick(SECOND, "overflow")),
        ("no key: least loaded", cands(first=2, second=1, third=5), None, (), Pick(SECOND, "load")),
        ("no key, equal load: lower KV usage", cands(first=1, second=1, third=1, kv_first=0.5, kv_second=0.2,
                                                     kv_third=0.9), None, (), Pick(SECOND, "load")),
        ("session key", cands(), Key(KEY.value, "affinity"), (), Pick(FIRST, "affinity")),
        ("every replica tried", cands(), KEY, set(NAMES), None),
        ("no replica", [], KEY, (), None),
    ],
)
def test_pick(case, candidates, key, exclude, expected):
    assert pick(candidates, key, exclude=exclude) == expected, case


def test_same_key_same_replica_whatever_the_order():
    """Two router replicas list the endpoints in different orders and still agree."""
    a = pick(cands(), KEY)
    b = pick(list(reversed(cands())), KEY)
    assert a == b == Pick(FIRST, "prefix")


@pytest.mark.parametrize(
    ("loads", "factor", "bound"),
    [
        ([0, 0, 0], 1.25, 2),  # ceil(1.25 * 1 / 3) = 1, raised to MIN_LOAD_BOUND
        ([1, 0, 0], 1.25, 2),  # one (possibly stale) request in flight does not divert a prefix
        ([4, 4, 4], 1.25, 6),  # ceil(1.25 * 13 / 3) = ceil(5.42)
        ([10, 0], 1.0, 6),  # ceil(11 / 2): a factor of 1 balances exactly
        ([100], 1.25, 127),  # one replica: it takes everything
    ],
)
def test_load_bound(loads, factor, bound):
    assert load_bound(loads, factor) == bound


def test_bound_caps_a_hot_key():
    """One key sending every request: no replica ends up above the bound when loads follow picks."""
    loads = dict.fromkeys(NAMES, 0.0)
    for _ in range(300):
        chosen = pick([Candidate(n, loads[n]) for n in NAMES], KEY)
        assert chosen is not None
        loads[chosen.name] += 1
    assert max(loads.values()) <= load_bound([299.0], 1.25) / 3 + 2  # ~1.25x the mean of 100
    assert min(loads.values()) > 0


def test_keys_spread_evenly_and_move_little_when_a_replica_goes():
    keys = [f"tenant-{i}" for i in range(3000)]
    before = {k: ring_order(k, NAMES)[0] for k in keys}
    shares = collections.Counter(before.values())
    assert all(700 < n < 1300 for n in shares.values()), shares  # about a third each
    after = {k: ring_order(k, NAMES[:2])[0] for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert all(before[k] == NAMES[2] for k in moved)  # only the removed replica's keys move


def test_load_factor_below_one_is_refused():
    with pytest.raises(ValueError, match="load_factor"):
        pick(cands(), KEY, load_factor=0.9)
