"""Default limits on engine pods: one service cannot push a shared node into OOM (a memory
limit even when spec.resources.memory is unset) or DiskPressure (size limits on the cache
and /tmp emptyDirs)."""

from __future__ import annotations

import pytest
from test_render import pod_spec, service

# (case, spec fields, uri) → (memory request, memory limit, /tmp sizeLimit, cache sizeLimit)
CASES = [
    ("no memory given: the defaults", {}, "file:///models/tiny", ("2Gi", "16Gi", "1Gi", "10Gi")),
    ("memory given: request = limit", {"resources": {"memory": "24Gi"}}, "file:///models/tiny",
     ("24Gi", "24Gi", "1Gi", "10Gi")),
    ("hf:// downloads into the cache: room for weights", {}, "hf://org/model", ("2Gi", "16Gi", "1Gi", "100Gi")),
    ("cacheSize given", {"resources": {"cacheSize": "300Gi"}}, "hf://org/model", ("2Gi", "16Gi", "1Gi", "300Gi")),
]


@pytest.mark.parametrize("case, fields, uri, expected", CASES, ids=[c[0] for c in CASES])
def test_memory_and_scratch_space_are_bounded(case, fields, uri, expected):
    spec = pod_spec(service(model={"uri": uri}, **fields))
    (engine,) = spec["containers"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    got = (engine["resources"]["requests"]["memory"], engine["resources"]["limits"]["memory"],
           volumes["tmp"]["emptyDir"]["sizeLimit"], volumes["cache"]["emptyDir"]["sizeLimit"])
    assert got == expected
    assert all("sizeLimit" in v["emptyDir"] for v in spec["volumes"] if "emptyDir" in v)  # every writable volume
