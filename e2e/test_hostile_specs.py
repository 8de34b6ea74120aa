"""Hostile LLMService specs against the real API server and the chart's admission policy
(docs/security.md): paths spelled to slip past rules written for their normal form."""

from __future__ import annotations

from bedkit import E2ECluster
from test_admission import ALLOWED, POLICY, create, llms
from test_admission import policy_fixture as policy_fixture  # noqa: F401 - the `policy` fixture


def test_host_paths_must_be_written_normally(cluster: E2ECluster, namespace: str, policy: str) -> None:
    # the policy is in force once a plain refusal comes back (compiled, binding synced)
    from bedkit import wait_until

    wait_until("the admission policy in force",
               lambda: create(cluster, namespace, llms("probe", "file:///etc")) is not None, timeout=60, interval=1)
    for uri in (f"file://{ALLOWED}//tiny", f"file://{ALLOWED}/tiny/", f"file:///{ALLOWED}/tiny"):
        message = create(cluster, namespace, llms("a", uri))
        assert message is not None and "spec.model.uri" in message and POLICY in message, (uri, message)
    assert create(cluster, namespace, llms("b", f"file://{ALLOWED}/tiny")) is None  # the policy still compiles
