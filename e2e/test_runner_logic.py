"""The pod runner's small decisions, without a cluster: kubelet's rules as tables."""

from __future__ import annotations

import pytest
from podenv import expand  # e2e/bed, put on sys.path by conftest.py
from podworker import Probe


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)", "a"),  # a defined variable is replaced
        ("x-$(A)-$(B)", "x-a-b"),
        ("$(MISSING)", "$(MISSING)"),  # an undefined one stays as written
        ("$$(A)", "$(A)"),  # $$ escapes
        ("$A", "$A"),  # only the $(...) form expands
    ],
)
def test_expand_follows_kubernetes_var_references(text: str, expected: str) -> None:
    assert expand(text, {"A": "a", "B": "b"}) == expected


@pytest.mark.parametrize(
    ("spec", "results", "ok"),
    [
        ({}, [True], True),  # successThreshold 1
        ({"successThreshold": 2}, [True], False),
        ({"successThreshold": 2}, [True, True], True),
        ({}, [True, False, False], True),  # failureThreshold 3: two failures are not enough
        ({}, [True, False, False, False], False),
        ({"failureThreshold": 1}, [True, False], False),
        ({}, [False, False, False, True], True),  # one success brings it back
    ],
)
def test_probe_thresholds(spec: dict, results: list[bool], ok: bool) -> None:
    probe = Probe(spec, ok=False)
    for r in results:
        probe.observe(r)
    assert probe.ok is ok
