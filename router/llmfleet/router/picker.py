"""Which replica takes a request: consistent hashing with bounded loads, as pure functions.

The method is Mirrokni, Thorup and Zadimoghaddam's "Consistent Hashing with Bounded Loads"
(SODA 2018): replicas sit on a hash ring (virtual nodes); a request's key hashes to a point
and walks clockwise to the first replica whose load after taking it stays within
ceil(c x (total load + 1) / replicas). Why this method:

| property                         | how it follows                                                  |
| -------------------------------- | --------------------------------------------------------------- |
| a prefix's requests meet its KV  | same key, same ring walk: same replica while it is not overloaded |
| a hot prefix cannot swamp one pod| the bound forwards its overflow to the next replica on the ring  |
| router replicas agree            | the ring depends only on the replica names; the load comes from the engines' own gauges; no shared state |
| replica churn moves few keys     | adding/removing one of n replicas moves ~1/n of the keys          |

A prefix tree of what was sent where (SGLang's router) can match partial prefixes, but it is
state that each router replica builds differently; the hash needs none.

| reason    | when                                                           |
| --------- | -------------------------------------------------------------- |
| prefix    | the key's first replica on the ring took it                    |
| affinity  | same, for a session key (the session header)                   |
| overflow  | the first replica was over the bound or KV-saturated: the walk went on |
| load      | no key (or every replica saturated): the least-loaded replica   |
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import lru_cache

VIRTUAL_NODES = 100  # points per replica on the ring: keys split within ~10 % evenly at this count


@dataclass(frozen=True)
class Candidate:
    name: str  # stable replica identity (the engine's address): the ring is built from these
    load: float  # requests waiting + running, as best known
    kv_usage: float = 0.0  # KV-cache usage ratio in [0, 1]


@dataclass(frozen=True)
class Key:
    value: str
    kind: str = "prefix"  # "prefix" or "affinity"


@dataclass(frozen=True)
class Pick:
    name: str
    reason: str  # prefix | affinity | overflow | load


def hash64(text: str) -> int:
    """A stable 64-bit hash (Python's hash() is salted per process: routers would disagree)."""
    # surrogatepass: JSON may carry a lone surrogate into a prompt; the engine refuses it with the
    # field, the router must only route it
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


@lru_cache(maxsize=512)
def _ring(names: tuple[str, ...]) -> tuple[tuple[int, ...], tuple[str, ...]]:
    points = sorted((hash64(f"{name}#{i}"), name) for name in names for i in range(VIRTUAL_NODES))
    return tuple(p for p, _ in points), tuple(n for _, n in points)


def ring_order(key: str, names: Collection[str]) -> list[str]:
    """The replicas in the order the key's ring walk meets them (each once)."""
    hashes, owners = _ring(tuple(sorted(names)))
    if not hashes:
        return []
    start = bisect.bisect(hashes, hash64(key))
    order: list[str] = []
    seen: set[str] = set()
    for i in range(len(owners)):
        name = owners[(start + i) % len(owners)]
        if name not in seen:
            seen.add(name)
            order.append(name)
            if len(order) == len(names):
                break
    return order


# Below this the bound never diverts: a replica may always carry one request besides the new
# one. At low load the paper's bound is 1, so a single stale reading (engine gauges lag up to a
# poll period, and another router's requests are seen only through them) would move a prefix
# off its replica, losing its cache for nothing: there is no overload to spread at that load.
MIN_LOAD_BOUND = 2


def load_bound(loads: Sequence[float], load_factor: float) -> float:
    """The most load one replica may carry after taking the new request."""
    return max(MIN_LOAD_BOUND, math.ceil(load_factor * (sum(loads) + 1) / len(loads)))


def least_loaded(candidates: Sequence[Candidate]) -> Candidate:
    return min(candidates, key=lambda c: (c.load, c.kv_usage, c.name))


def pick(
    candidates: Sequence[Candidate],
    key: Key | None,
    *,
    load_factor: float = 1.25,
    kv_saturation: float = 0.95,
    exclude: Collection[str] = (),
) -> Pick | None:
    """The replica for one request; None when no candidate is left. `exclude` holds replicas
    already tried for this request: the walk skips them, so a retry goes where every router
    would send it second."""
    if load_factor < 1:
        raise ValueError(f"load_factor must be at least 1, got {load_factor}")
    left = [c for c in candidates if c.name not in exclude]
    if not left:
        return None
    if key is None:
        return Pick(least_loaded(left).name, "load")
    by_name = {c.name: c for c in candidates}
    # the bound is over every replica (excluded ones still carry their load): excluding one must
    # not make the others look emptier than they are
    bound = load_bound([c.load for c in candidates], load_factor)
    first = True
    for name in ring_order(key.value, by_name):
        cand = by_name[name]
        if name in exclude:
            first = False
            continue
        if cand.kv_usage < kv_saturation and cand.load + 1 <= bound:
            return Pick(name, key.kind if first else "overflow")
        first = False
    # every replica left is above the bound or saturated: the average argument says this happens
    # only through saturation or exclusions
    return Pick(least_loaded(left).name, "load")
