"""Which pods are in rotation, how load is estimated, how keys are honoured."""

from __future__ import annotations

import base64

import pytest
from llmfleet.router.errors import Unauthorized
from llmfleet.router.fleet import Fleet, Load, Replica, replica_from_pod, service_from_object
from llmfleet.router.keys import accepts, check, keys_from_secret


def pod(name="chat-abc", *, ready=True, phase="Running", ip="10.1.0.5", annotations=None, deleting=False,
        labels=None, port=8000):
    meta = {"name": name, "namespace": "team-a",
            "labels": labels if labels is not None else {"app.kubernetes.io/name": "llmfleet-engine",
                                                         "llmfleet.dev/service": "chat"},
            "annotations": annotations or {}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta,
            "spec": {"containers": [{"name": "engine", "ports": [{"name": "http", "containerPort": port}]}]},
            "status": {"phase": phase, "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


@pytest.mark.parametrize(
    ("case", "obj", "serving"),
    [
        ("ready and running", pod(), True),
        ("not ready (loading, or draining: /ready says 503)", pod(ready=False), False),
        ("pending", pod(phase="Pending"), False),
        ("no IP yet", pod(ip=""), False),
        ("terminating (rollout, scale-down, eviction)", pod(deleting=True), False),
        ("drained by the operator (spot notice), still Ready", pod(annotations={"llmfleet.dev/drain-started":
                                                                              "2026-01-01T00:00:00Z"}), False),
        ("only a surge mark (advisory): still serving", pod(annotations={"llmfleet.dev/drain-surge": "spot"}), True),
    ],
)
def test_rotation(case, obj, serving):
    replica = replica_from_pod(obj)
    assert replica is not None and replica.serving is serving, case


def test_replica_address_and_foreign_pods():
    r = replica_from_pod(pod(port=9000))
    assert r == Replica("team-a", "chat-abc", "chat", "http://10.1.0.5:9000", True)
    assert replica_from_pod(pod(labels={"llmfleet.dev/service": "chat"})) is None  # not an engine pod
    assert replica_from_pod(pod(labels={"app.kubernetes.io/name": "llmfleet-engine"})) is None


def test_service_from_object_defaults_the_served_name():
    obj = {"metadata": {"name": "chat", "namespace": "team-a"}, "spec": {"model": {"uri": "file:///m"}}}
    assert service_from_object(obj).served_name == "chat"
    obj["spec"]["model"]["servedName"] = "qwen"
    obj["spec"]["apiKeySecretRef"] = {"name": "keys", "key": "api-key"}
    info = service_from_object(obj)
    assert info.served_name == "qwen" and info.key_ref.name == "keys"


@pytest.mark.parametrize(
    ("load", "estimate"),
    [
        (Load(in_flight=3), 3),  # never scraped: only what this router sent
        (Load(in_flight=3, scraped=10, in_flight_at_scrape=3), 10),  # the reading counts ours already
        (Load(in_flight=5, scraped=10, in_flight_at_scrape=3), 12),  # two more sent since the reading
        (Load(in_flight=1, scraped=10, in_flight_at_scrape=3), 8),  # two of ours finished since
        (Load(in_flight=4, scraped=0, in_flight_at_scrape=6), 4),  # never below what we know is open
    ],
)
def test_load_estimate(load, estimate):
    assert load.estimate() == estimate


def test_candidates_skip_draining_and_cooling_replicas():
    now = [100.0]
    fleet = Fleet(clock=lambda: now[0])
    info = service_from_object({"metadata": {"name": "chat", "namespace": "team-a"}, "spec": {"model": {}}})
    fleet.set_service(info)
    for i in range(3):
        fleet.set_replica(replica_from_pod(pod(f"p{i}", ip=f"10.1.0.{i}")))
    fleet.loads["http://10.1.0.1:8000"].draining = True  # its /metrics said so before the watch did
    fleet.cool_down("http://10.1.0.2:8000", 2.0)
    assert [c.name for c in fleet.candidates(info)] == ["http://10.1.0.0:8000"]
    now[0] += 3
    assert len(fleet.candidates(info)) == 2
    fleet.remove_replica("team-a", "p0")
    assert "http://10.1.0.0:8000" not in fleet.loads


def test_one_served_name_in_two_namespaces_oldest_first():
    fleet = Fleet()
    for ns, created in (("team-b", "2026-02-01T00:00:00Z"), ("team-a", "2026-03-01T00:00:00Z")):
        fleet.set_service(service_from_object({"metadata": {"name": "chat", "namespace": ns,
                                                            "creationTimestamp": created}, "spec": {}}))
    assert [s.namespace for s in fleet.services_for("chat")] == ["team-b", "team-a"]


def test_keys_from_a_secret_and_checks():
    secret = {"data": {"api-key": base64.b64encode(b"k1\n# old\n\nk2\n").decode()}}
    keys = keys_from_secret(secret, "api-key")
    assert keys == ("k1", "k2")
    assert accepts(keys, "Bearer k2") and not accepts(keys, "Bearer k3") and not accepts(keys, None)
    assert accepts(None, None)  # a service without keys
    assert not accepts((), "Bearer k1")  # keys that could not be read: nobody
    with pytest.raises(Unauthorized, match="missing"):
        check(keys, "Basic abc")
    with pytest.raises(Unauthorized, match="invalid"):
        check(keys, "Bearer nope")
