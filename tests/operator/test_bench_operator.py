"""The pure helpers of e2e/bench_operator.py (`make bench-operator`): parsing and arithmetic only."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "e2e" / "bench_operator.py"
_spec = importlib.util.spec_from_file_location("bench_operator", _PATH)
assert _spec and _spec.loader
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_operator"] = bench  # dataclasses look their module up
_spec.loader.exec_module(bench)

OPERATOR_METRICS = """\
# HELP llmfleet_operator_api_requests_total API calls
# TYPE llmfleet_operator_api_requests_total counter
llmfleet_operator_api_requests_total{verb="get"} 12.0
llmfleet_operator_api_requests_total{verb="patch"} 30.0
llmfleet_operator_api_requests_created{verb="get"} 1.7e+09
llmfleet_operator_reconciles_total{kind="LLMService",result="success"} 40.0
llmfleet_operator_reconciles_total{kind="LLMService",result="error"} 2.0
llmfleet_operator_reconciles_total{kind="AutoscalePolicy",result="success"} 5.0
this line is not a sample
"""

APISERVER = """\
apiserver_flowcontrol_dispatched_requests_total{flow_schema="llmfleet-bench-operator",priority_level="workload-low"} 321
apiserver_flowcontrol_dispatched_requests_total{flow_schema="service-accounts",priority_level="workload-low"} 9
apiserver_flowcontrol_dispatched_requests_total{flow_schema="a \\"quoted\\" one",priority_level="x"} 1
"""


def test_metric_sum_filters_by_labels_and_sums():
    assert bench.metric_sum(OPERATOR_METRICS, "llmfleet_operator_reconciles_total", kind="LLMService") == 42.0
    assert bench.metric_sum(OPERATOR_METRICS, "llmfleet_operator_api_requests_total") == 42.0
    assert bench.metric_sum(APISERVER, "apiserver_flowcontrol_dispatched_requests_total",
                            flow_schema="llmfleet-bench-operator") == 321
    assert bench.metric_sum(OPERATOR_METRICS, "llmfleet_operator_drains_total") is None


def test_metric_by_groups_on_one_label_and_ignores_created_series():
    assert bench.metric_by(OPERATOR_METRICS, "llmfleet_operator_api_requests_total", "verb") == {"get": 12.0, "patch": 30.0}


def test_unlabelled_samples_and_engine_gauges_parse():
    text = "llmfleet_engine_requests_waiting 3\nllmfleet_engine_requests_running 1.0\n"
    assert bench.metric_sum(text, "llmfleet_engine_requests_waiting") == 3.0


def test_proc_cpu_seconds_counts_fields_after_the_command_name():
    # comm may hold spaces and ')': utime (14) = 250, stime (15) = 50 ticks.
    stat = "4242 (odd) name)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 123 456 789"
    assert bench.proc_cpu_seconds(stat, 100) == pytest.approx(3.0)


def test_cgroup_cpu_seconds_reads_the_container_cgroup_v1_cpuacct_or_v2_cpu_stat():
    files = {
        "cpu,cpuacct/llmfleet-bed-1/kubepods/burstable/podu1/c1/cpuacct.usage": "2500000000\n",
        "kubepods/podu2/c2/cpu.stat": "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n",
    }
    v1 = "12:memory:/llmfleet-bed-1/kubepods/burstable/podu1/c1\n3:cpu,cpuacct:/llmfleet-bed-1/kubepods/burstable/podu1/c1\n0::/"
    assert bench.cgroup_cpu_seconds(v1, files.__getitem__) == pytest.approx(2.5)
    assert bench.cgroup_cpu_seconds("0::/kubepods/podu2/c2\n", files.__getitem__) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="no cpuacct or unified"):
        bench.cgroup_cpu_seconds("4:memory:/x\n", files.__getitem__)


def test_rates_and_deltas():
    assert bench.per_minute(100, 130, 30) == pytest.approx(60.0)
    with pytest.raises(ValueError):
        bench.per_minute(0, 1, 0)
    assert bench.counter_deltas({"get": 10}, {"get": 15, "apply": 2}) == {"apply": 2, "get": 5}
    assert bench.cpu_ms_per_minute(1.0) == pytest.approx(600.0)


def test_window_of_two_snapshots():
    a = bench.Snapshot(t=0.0, cpu=1.0, reconciler={"patch": 10}, apiserver=100.0, reconciles=5, others_cpu={"etcd": 2.0})
    b = bench.Snapshot(t=60.0, cpu=1.6, reconciler={"patch": 70, "get": 6}, apiserver=190.0, reconciles=65,
                       others_cpu={"etcd": 2.6})
    w = bench.window_of("fleet", 3, a, b)
    assert w.cpu_percent == pytest.approx(1.0)
    assert w.reconciler_per_min == {"get": 6.0, "patch": 60.0}
    assert w.reconciler_total_per_min == pytest.approx(66.0)
    assert w.apiserver_per_min == pytest.approx(90.0)
    assert w.reconciles_per_min == pytest.approx(60.0)
    assert w.others_cpu_percent == {"etcd": pytest.approx(1.0)}
    assert "3 services" in w.line()
    assert bench.window_of("x", 1, bench.Snapshot(0, 0, {}, None, 0), bench.Snapshot(10, 0, {}, 5.0, 0)).apiserver_per_min is None


def test_spread():
    assert bench.spread([3.0, 1.0, 2.0, 10.0]) == (1.0, 2.5, 10.0)
    assert bench.fmt_spread([1.0, 2.0, 3.0]) == "1.0 / 2.0 / 3.0 s"
    with pytest.raises(ValueError):
        bench.spread([])



def test_breakdown_schemas_match_one_resource_and_verb_of_the_operator_each():
    schemas = bench.breakdown_schemas("llmfleet", "llmfleet-system")
    names = [s["metadata"]["name"] for s in schemas]
    assert len(names) == len(set(names)) == len(bench.BREAKDOWN_RESOURCES) * len(bench.BREAKDOWN_VERBS)
    status_patch = next(s for s in schemas if s["metadata"]["name"] == f"{bench.FLOW_SCHEMA}-llmservices-status-patch")
    rule = status_patch["spec"]["rules"][0]
    assert rule["resourceRules"][0]["resources"] == ["llmservices/status"]
    assert rule["resourceRules"][0]["verbs"] == ["patch"]
    assert rule["subjects"][0]["serviceAccount"] == {"name": "llmfleet", "namespace": "llmfleet-system"}
    assert status_patch["spec"]["matchingPrecedence"] < 1000  # ahead of the catch-all FLOW_SCHEMA


def test_schema_counts_split_the_operator_requests_and_keep_the_rest_as_other():
    name = "apiserver_flowcontrol_dispatched_requests_total"
    text = "\n".join([
        f'{name}{{flow_schema="{bench.FLOW_SCHEMA}",priority_level="workload-low"}} 4',
        f'{name}{{flow_schema="{bench.FLOW_SCHEMA}-pods-list",priority_level="workload-low"}} 7',
        f'{name}{{flow_schema="{bench.FLOW_SCHEMA}-llmservices-status-patch",priority_level="workload-low"}} 30',
        f'{name}{{flow_schema="global-default",priority_level="global-default"}} 99',
    ])
    assert bench.schema_counts(text) == {"other": 4.0, "pods-list": 7.0, "llmservices-status-patch": 30.0}
    a = bench.Snapshot(0, 0, {}, 41.0, 0, schemas={"pods-list": 7.0})
    b = bench.Snapshot(60, 0, {}, 101.0, 0, schemas={"pods-list": 10.0, "nodes-list": 1.0})
    w = bench.window_of("x", 1, a, b)
    assert w.apiserver_by == {"nodes-list": 1.0, "pods-list": 3.0}
    assert "pods-list 3.0" in w.line()
