"""The node agent against a fake instance metadata service on 127.0.0.1 (never the real one).

The fake speaks IMDSv2: PUT /latest/api/token hands out a token, every GET must carry it
(401 otherwise); each path's answer (status, body, delay) is set per test.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from llmfleet.operator.adapters.node_agent import (
    ACTION_ANNOTATION,
    DEADLINE_ANNOTATION,
    INSTANCE_ACTION_PATH,
    INTERRUPTION_TAINT,
    REBALANCE_ANNOTATION,
    REBALANCE_PATH,
    TOKEN_PATH,
    UNKNOWN,
    ImdsClient,
    InstanceAction,
    Observation,
    desired_node_patch,
    poll_once,
    run_agent,
)
from llmfleet.operator.api.spotpool import SpotPoolSpec
from llmfleet.operator.spot.signals import detect_interruptions

ACTION = '{"action": "terminate", "time": "2026-11-22T00:02:00Z"}'
REBALANCE = '{"noticeTime": "2026-11-22T00:00:00Z"}'


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:  # skip HTTPServer's reverse DNS lookup of the address (slow)
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request, client_address) -> None:  # a client that timed out and left
        pass


class FakeImds:
    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, str, float]] = {
            INSTANCE_ACTION_PATH: (404, "Not Found", 0),
            REBALANCE_PATH: (404, "Not Found", 0),
        }
        self.token_answer: tuple[int, str] = (200, "tok-1")
        self.valid_tokens = {"tok-1"}
        self.requests: list[tuple[str, str, str | None]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self):
                fake.requests.append(
                    ("PUT", self.path, self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"))
                )
                if self.path != TOKEN_PATH:
                    return self._send(404, "")
                self._send(*fake.token_answer)

            def do_GET(self):
                token = self.headers.get("X-aws-ec2-metadata-token")
                fake.requests.append(("GET", self.path, token))
                if token not in fake.valid_tokens:
                    return self._send(401, "")
                status, body, delay = fake.answers.get(self.path, (404, "", 0))
                if delay:
                    threading.Event().wait(delay)
                self._send(status, body)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeNodes:
    def __init__(self, node: dict) -> None:
        self.node = node
        self.patches: list[dict] = []
        self.fail: Exception | None = None

    def get_node(self, name: str) -> dict:
        if self.fail:
            raise self.fail
        return self.node

    def patch_node(self, name: str, patch: dict) -> None:
        self.patches.append(patch)
        meta = self.node.setdefault("metadata", {})
        for key, value in (patch.get("metadata", {}).get("annotations") or {}).items():
            if value is None:
                meta.setdefault("annotations", {}).pop(key, None)
            else:
                meta.setdefault("annotations", {})[key] = value
        if "spec" in patch:
            self.node.setdefault("spec", {})["taints"] = patch["spec"]["taints"]


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    fake = FakeImds()
    yield fake
    fake.close()


def node() -> dict:
    return {
        "metadata": {"name": "n1", "resourceVersion": "7", "annotations": {}},
        "spec": {"taints": [{"key": "gpu", "effect": "NoSchedule"}]},
    }


def client(fake: FakeImds, timeout: float = 1.0) -> ImdsClient:
    return ImdsClient(fake.url, timeout=timeout)


def test_nothing_pending_changes_nothing(imds):
    nodes = FakeNodes(node())
    result = poll_once("n1", client(imds), nodes)
    assert result.observation == Observation(None, None)
    assert nodes.patches == []
    # IMDSv2: the token came first, with a TTL, and every GET carried it.
    assert imds.requests[0] == ("PUT", TOKEN_PATH, "21600")
    assert all(tok == "tok-1" for method, _, tok in imds.requests if method == "GET")


def test_a_notice_sets_the_deadline_annotation_and_taint_that_the_operator_reads(imds):
    imds.answers[INSTANCE_ACTION_PATH] = (200, ACTION, 0)
    nodes = FakeNodes(node())
    poll_once("n1", client(imds), nodes)
    (patch,) = nodes.patches
    assert patch["metadata"]["annotations"] == {
        DEADLINE_ANNOTATION: "2026-11-22T00:02:00Z",
        ACTION_ANNOTATION: "terminate",
    }
    assert patch["metadata"]["resourceVersion"] == "7"  # the taint list is replaced whole: lock it
    assert patch["spec"]["taints"] == [
        {"key": "gpu", "effect": "NoSchedule"},
        {"key": INTERRUPTION_TAINT, "value": "terminate", "effect": "NoSchedule"},
    ]
    # The operator's default signals read it as a notice with a known deadline.
    pool = SpotPoolSpec.model_validate({"spot": {"nodeSelector": {"spot": "true"}}})
    (notice,) = detect_interruptions([nodes.node], [], [], pool, datetime(2026, 11, 22, tzinfo=UTC))
    assert notice.deadline_known and notice.notice_seconds == 120
    # Polling again changes nothing.
    poll_once("n1", client(imds), nodes)
    assert len(nodes.patches) == 1


def test_rebalance_recommendation_is_an_advisory_annotation(imds):
    imds.answers[REBALANCE_PATH] = (200, REBALANCE, 0)
    nodes = FakeNodes(node())
    poll_once("n1", client(imds), nodes)
    assert nodes.patches == [{"metadata": {"annotations": {REBALANCE_ANNOTATION: "2026-11-22T00:00:00Z"}}}]


def test_a_withdrawn_notice_is_removed_only_on_a_definite_404(imds):
    imds.answers[INSTANCE_ACTION_PATH] = (200, ACTION, 0)
    imds.answers[REBALANCE_PATH] = (200, REBALANCE, 0)
    nodes = FakeNodes(node())
    agent = client(imds)
    poll_once("n1", agent, nodes)
    imds.answers[INSTANCE_ACTION_PATH] = (503, "busy", 0)
    imds.answers[REBALANCE_PATH] = (500, "oops", 0)
    poll_once("n1", agent, nodes)
    assert len(nodes.patches) == 1  # errors never clear a notice
    imds.answers[INSTANCE_ACTION_PATH] = (404, "", 0)
    imds.answers[REBALANCE_PATH] = (404, "", 0)
    poll_once("n1", agent, nodes)
    last = nodes.patches[-1]
    assert last["metadata"]["annotations"] == {
        DEADLINE_ANNOTATION: None,
        ACTION_ANNOTATION: None,
        REBALANCE_ANNOTATION: None,
    }
    assert last["spec"]["taints"] == [{"key": "gpu", "effect": "NoSchedule"}]


def test_someone_elses_deadline_annotation_is_left_alone(imds):
    n = node()
    n["metadata"]["annotations"][DEADLINE_ANNOTATION] = "2026-11-22T00:05:00Z"  # set by another agent
    nodes = FakeNodes(n)
    poll_once("n1", client(imds), nodes)
    assert nodes.patches == []


# (case, instance-action answer) → the error reason; the node is never touched
FAILURES = [
    ("5xx", (500, "Internal Error", 0), "HttpError"),
    ("garbage body", (200, "<html>hello</html>", 0), "MalformedInstanceAction"),
    ("JSON without an action", (200, '{"time": "2026-11-22T00:02:00Z"}', 0), "MalformedInstanceAction"),
    (
        "unknown action",
        (200, '{"action": "explode", "time": "2026-11-22T00:02:00Z"}', 0),
        "MalformedInstanceAction",
    ),
    (
        "time without offset",
        (200, '{"action": "stop", "time": "2026-11-22T00:02:00"}', 0),
        "MalformedInstanceAction",
    ),
    ("a JSON list", (200, "[1, 2]", 0), "MalformedInstanceAction"),
    ("timeout", (200, ACTION, 1.0), "Timeout"),
]


@pytest.mark.parametrize("case, answer, reason", FAILURES, ids=[c[0] for c in FAILURES])
def test_failures_are_reported_and_change_nothing(imds, case, answer, reason):
    imds.answers[INSTANCE_ACTION_PATH] = answer
    nodes = FakeNodes(node())
    result = poll_once("n1", client(imds, timeout=0.3), nodes)
    assert result.observation.instance_action is UNKNOWN
    assert result.observation.errors[0].startswith(reason)
    assert nodes.patches == []


def test_token_refused_means_no_reads(imds):
    imds.token_answer = (403, "Forbidden")
    nodes = FakeNodes(node())
    result = poll_once("n1", client(imds), nodes)
    assert result.observation.instance_action is UNKNOWN and result.observation.rebalance is UNKNOWN
    assert all(e.startswith("TokenRefused") for e in result.observation.errors)
    assert [m for m, _, _ in imds.requests] == ["PUT", "PUT"] and nodes.patches == []


def test_an_expired_token_is_renewed_once(imds):
    agent = client(imds)
    agent.token()
    imds.valid_tokens = {"tok-2"}
    imds.token_answer = (200, "tok-2")
    imds.answers[INSTANCE_ACTION_PATH] = (200, ACTION, 0)
    assert agent.instance_action() == InstanceAction("terminate", datetime(2026, 11, 22, 0, 2, tzinfo=UTC))


def test_metadata_service_unreachable():
    agent = ImdsClient("http://127.0.0.1:9", timeout=0.3)  # discard port: nothing listens
    obs = agent.observe()
    assert obs.instance_action is UNKNOWN and obs.errors[0].split(":")[0] in ("Unreachable", "Timeout")


def test_node_api_failure_is_reported_and_the_loop_goes_on(imds):
    nodes = FakeNodes(node())
    nodes.fail = RuntimeError("connection refused")
    result = poll_once("n1", client(imds), nodes)
    assert result.error == "connection refused"


def test_run_agent_polls_until_stopped(imds):
    imds.answers[INSTANCE_ACTION_PATH] = (200, ACTION, 0)
    nodes = FakeNodes(node())
    stop = threading.Event()
    thread = threading.Thread(target=run_agent, args=("n1", client(imds), nodes, 0.05, stop))
    thread.start()
    for _ in range(100):
        if nodes.patches:
            break
        threading.Event().wait(0.02)
    stop.set()
    thread.join(2)
    assert not thread.is_alive() and len(nodes.patches) == 1


def test_desired_patch_without_a_resource_version_still_works():
    n = {"metadata": {"name": "n1"}, "spec": {}}
    obs = Observation(InstanceAction("stop", datetime(2026, 11, 22, tzinfo=UTC)), UNKNOWN)
    patch = desired_node_patch(n, obs)
    assert "resourceVersion" not in patch["metadata"] and patch["spec"]["taints"][0]["value"] == "stop"


def test_cli_node_agent_needs_a_node_name(monkeypatch, capsys):
    from llmfleet.operator.cli import build_parser, main

    monkeypatch.delenv("NODE_NAME", raising=False)
    assert main(["node-agent"]) == 2
    assert "--node-name" in capsys.readouterr().err
    args = build_parser().parse_args(["node-agent", "--node-name", "n1", "--interval", "3"])
    assert (args.node_name, args.imds_url, args.interval, args.timeout) == (
        "n1",
        "http://169.254.169.254",
        3.0,
        2.0,
    )
