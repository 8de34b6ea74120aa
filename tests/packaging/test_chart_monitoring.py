"""The Grafana dashboard and the PrometheusRule: every query names a metric the engine or the
operator exports, and the alerts fire (and stay quiet) on the stories in
testdata/alerts_test.yaml, evaluated by promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from packaging_helpers import CHART, by_kind, render

TESTDATA = Path(__file__).parent / "testdata"

# The metric contract (shared/design.md): names other parts export.
ENGINE_METRICS = {
    "llmfleet_engine_requests_waiting",
    "llmfleet_engine_requests_running",
    "llmfleet_engine_draining",
    "llmfleet_engine_kv_cache_usage_ratio",
    "llmfleet_engine_time_to_first_token_seconds",
    "llmfleet_engine_time_per_output_token_seconds",
    "llmfleet_engine_e2e_request_latency_seconds",
    "llmfleet_engine_prompt_tokens_total",
    "llmfleet_engine_generation_tokens_total",
    "llmfleet_engine_requests_finished_total",
    "llmfleet_engine_requests_rejected_total",
    "llmfleet_engine_prefix_cache_queries_total",
    "llmfleet_engine_prefix_cache_hits_total",
    "llmfleet_engine_preemptions_total",
}
OPERATOR_METRICS = {
    "llmfleet_operator_reconciles_total",
    "llmfleet_operator_reconcile_duration_seconds",
    "llmfleet_operator_managed_services",
    "llmfleet_operator_scale_decisions_total",
    "llmfleet_operator_desired_replicas",
    "llmfleet_operator_cost_per_hour",
    "llmfleet_operator_drains_total",
}
ROUTER_METRICS = {  # router/llmfleet/router/metrics.py
    "llmfleet_router_requests_total",
    "llmfleet_router_request_duration_seconds",
    "llmfleet_router_time_to_first_byte_seconds",
    "llmfleet_router_retries_total",
    "llmfleet_router_routing_decisions_total",
    "llmfleet_router_requests_held",
    "llmfleet_router_hold_timeouts_total",
    "llmfleet_router_client_disconnects_total",
    "llmfleet_router_replicas_in_rotation",
    "llmfleet_router_metrics_scrape_errors_total",
}
HISTOGRAMS = {
    "llmfleet_router_request_duration_seconds",
    "llmfleet_router_time_to_first_byte_seconds",
    "llmfleet_engine_time_to_first_token_seconds",
    "llmfleet_engine_time_per_output_token_seconds",
    "llmfleet_engine_e2e_request_latency_seconds",
    "llmfleet_operator_reconcile_duration_seconds",
}
METRIC = re.compile(r"\bllmfleet_(?:engine|operator|router)_[a-z0-9_]+")


def metrics_in(expr: str) -> set[str]:
    names = set()
    for name in METRIC.findall(expr):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name.endswith("_bucket"):
            assert base in HISTOGRAMS, f"{name}: _bucket of a metric that is not a histogram"
        names.add(base if base in HISTOGRAMS else name)
    return names


def dashboard() -> dict:
    return json.loads((CHART / "dashboards" / "llmfleet.json").read_text())


def panels() -> list[dict]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def test_dashboard_queries_name_only_exported_metrics():
    used = set()
    for panel in panels():
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            found = metrics_in(target["expr"])
            assert found, (panel["title"], target["expr"])
            used |= found
    known = ENGINE_METRICS | OPERATOR_METRICS | ROUTER_METRICS
    assert used <= known, used - known
    # Every engine metric is on the dashboard somewhere.
    assert ENGINE_METRICS <= used, ENGINE_METRICS - used


@pytest.mark.parametrize(
    ("title", "metric"),
    [
        ("Queue depth", "llmfleet_engine_requests_waiting"),
        ("Replicas: desired and serving", "llmfleet_operator_desired_replicas"),
        ("Tokens per second", "llmfleet_engine_generation_tokens_total"),
        ("KV-cache usage", "llmfleet_engine_kv_cache_usage_ratio"),
        ("Drains", "llmfleet_operator_drains_total"),
        ("Rejected requests", "llmfleet_engine_requests_rejected_total"),
        ("Routing decisions", "llmfleet_router_routing_decisions_total"),
        ("Router retries and held requests", "llmfleet_router_requests_held"),
    ],
)
def test_dashboard_has_the_panels_operators_look_for(title, metric):
    (panel,) = [p for p in panels() if p["title"] == title]
    assert any(metric in metrics_in(t["expr"]) for t in panel["targets"])


@pytest.mark.parametrize(
    "metric", ["llmfleet_engine_time_to_first_token_seconds", "llmfleet_engine_time_per_output_token_seconds"]
)
def test_latency_panels_show_p50_p95_p99(metric):
    (panel,) = [p for p in panels() if any(metric in t["expr"] for t in p["targets"])]
    quantiles = sorted(
        re.match(r"histogram_quantile\((0\.\d+),", t["expr"]).group(1) for t in panel["targets"]
    )
    assert quantiles == ["0.5", "0.95", "0.99"]
    assert all(f"{metric}_bucket" in t["expr"] and "le)" in t["expr"] for t in panel["targets"])


def test_dashboard_layout_and_variables():
    dash = dashboard()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for panel in dash["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine
    assert [v["name"] for v in dash["templating"]["list"]] == ["datasource", "namespace", "service"]
    assert all(p["datasource"]["uid"] == "${datasource}" for p in panels())


def test_dashboard_configmap_carries_the_file_and_the_sidecar_label(helm):
    (cm,) = by_kind(render(helm), "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["llmfleet.json"]) == dashboard()


def rule_groups(helm) -> dict:
    (rule,) = by_kind(render(helm, "prometheusRule.enabled=true"), "PrometheusRule")
    return rule["spec"]


def test_alert_expressions_name_only_exported_metrics(helm):
    for group in rule_groups(helm)["groups"]:
        for rule in group["rules"]:
            assert metrics_in(rule["expr"]) <= ENGINE_METRICS | OPERATOR_METRICS, rule


def test_alert_rules_pass_promtool_check(helm, promtool, tmp_path):
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_groups(helm)))
    done = subprocess.run(
        [str(promtool), "check", "rules", str(tmp_path / "rules.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_alerts_fire_on_the_stories_in_alerts_test_yaml(helm, promtool, tmp_path):
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_groups(helm)))
    shutil.copy(TESTDATA / "alerts_test.yaml", tmp_path / "alerts_test.yaml")
    done = subprocess.run(
        [str(promtool), "test", "rules", str(tmp_path / "alerts_test.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_router_metric_names_are_the_routers_own():
    from llmfleet.router.metrics import RouterMetrics

    exported = {f.name + ("_total" if f.type == "counter" else "") for f in RouterMetrics().registry.collect()}
    assert exported == ROUTER_METRICS
