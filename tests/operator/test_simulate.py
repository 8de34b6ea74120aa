"""`llmfleet-operator simulate`: a burst replayed against a hand-computed table, the plot,
and the errors users see for malformed input."""

import io
import subprocess
import sys
from pathlib import Path

import pytest
from llmfleet.operator.cli import main
from llmfleet.operator.simulate import (
    SimulateError,
    TracePoint,
    load_policy,
    parse_policy,
    parse_trace,
    run_simulation,
    simulate,
)

DATA = Path(__file__).parent / "data"
POLICY = DATA / "autoscalepolicy-chat.yaml"
TRACE = DATA / "trace-burst.csv"

# Worked by hand from docs/autoscaling.md: target 4, sync 15s, startup 30s, scale-down
# window 120s with at most 50% per 30s. The burst (total 40) starts at t=30 and ends at t=150.
# t, replicas, ready, average, desired   why
EXPECTED = """\
t_seconds,replicas,ready_replicas,metric_average,desired_replicas
0,1,1,2,1
15,1,1,2,1
30,5,1,40,10
45,8,1,40,10
60,8,5,8,10
75,8,8,5,10
90,8,8,5,10
105,8,8,5,10
120,8,8,5,10
135,8,8,5,10
150,8,8,0.5,1
165,8,8,0.5,1
180,8,8,0.5,1
195,8,8,0.5,1
210,8,8,0.5,1
225,8,8,0.5,1
240,8,8,0.5,1
255,4,8,0.5,1
270,4,4,1,1
285,2,4,1,1
300,2,2,2,1
315,1,2,2,1
330,1,1,4,1
345,1,1,4,1
360,1,1,4,1
375,1,1,4,1
390,1,1,4,1
405,1,1,4,1
420,1,1,4,1
435,1,1,4,1
450,1,1,2,1
"""
# Why each step, for a reviewer:
#  30: ratio 40/4 = 10 → 10; scale-up limit max(2 x 1, 1 + 4) = 5 (ScaleUpLimit).
#  45: 4 starting pods count as 0 load: 40 / 5 / 4 = 2 → 10; the t=30 event is a full
#      period old, so the limit is 10; maxReplicas 8 (TooManyReplicas).
#  60: the first 4 new pods are ready (startup 30s); 40 / 8 / 4 = 1.25 → 10 → 8.
# 150: load drops, recommendation 1, but recommendations of 10 until t=135 are inside the
#      120s window: stay at 8 (ScaleDownStabilized).
# 255: t=135 leaves the window; 50% per 30s: 8 → 4, then 2 at 285, then 1 at 315.


def test_burst_matches_the_hand_computed_table():
    out = io.StringIO()
    run_simulation(POLICY, TRACE, out, initial_replicas=1, startup_seconds=30)
    assert out.getvalue() == EXPECTED


def test_default_behavior_scales_up_within_one_period_and_down_after_300s():
    policy = parse_policy(
        "apiVersion: llmfleet.dev/v1alpha1\nkind: AutoscalePolicy\nmetadata: {name: p}\n"
        "spec: {maxReplicas: 10, metric: {targetAverageValue: 4}}\n"
    )
    trace = [TracePoint(0, 4), TracePoint(60, 32), TracePoint(120, 4), TracePoint(900, 4)]
    rows = {r.t_seconds: r for r in simulate(policy.spec, trace, initial_replicas=1, startup_seconds=0)}
    # The queue forms at t=60: that very sync scales (1 → 5: +4 beats doubling).
    assert rows[45].replicas == 1 and rows[60].replicas == 5
    assert rows[75].replicas == 8  # ready 5 at avg 6.4 → ceil(1.6 x 5) = 8
    # The last recommendation of 8 is at t=105 (at target, within tolerance, so "keep 8");
    # it leaves the 300s window at t=405, and the default policy drops 100% per 15s.
    assert rows[120].replicas == 8 and rows[390].replicas == 8
    assert rows[405].replicas == 1


def test_startup_seconds_keep_new_pods_unready():
    policy = load_policy(POLICY)
    rows = simulate(
        policy.spec, [TracePoint(0, 40), TracePoint(120, 40)], initial_replicas=1, startup_seconds=60
    )
    ready = {r.t_seconds: r.ready_replicas for r in rows}
    assert ready[45] == 1 and ready[60] == 5  # created at t=0, ready at t=60


def test_metrics_hold_when_no_pod_is_ready():
    policy = load_policy(POLICY)
    rows = simulate(
        policy.spec, [TracePoint(0, 8), TracePoint(30, 8)], initial_replicas=0, startup_seconds=120
    )
    # 0 replicas is below minReplicas 1: straight to 1; the new pod is still loading after.
    assert [(r.replicas, r.ready_replicas, r.metric_average) for r in rows] == [
        (1, 0, None),
        (1, 0, None),
        (1, 0, None),
    ]


def test_plot_is_a_png(tmp_path):
    out = tmp_path / "burst.png"
    run_simulation(POLICY, TRACE, io.StringIO(), initial_replicas=1, startup_seconds=30, plot_path=out)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000


@pytest.mark.parametrize(
    "text,message",
    [
        ("", "empty; expected the header"),
        ("time,load\n0,1\n", "line 1: expected the header 't_seconds,total'"),
        ("t_seconds,total\n", "no rows after the header"),
        ("t_seconds,total\n0,1\n15,abc\n", "line 3: total 'abc' is not a number"),
        ("t_seconds,total\n0,1\n\n15,2,3\n", "line 4: expected 2 columns"),
        ("t_seconds,total\n0,1\n-5,2\n", "line 3: t_seconds '-5' must be a non-negative number"),
        ("t_seconds,total\n0,1\n15,nan\n", "line 3: total 'nan' must be a non-negative number"),
        ("t_seconds,total\n0,1\n30,2\n30,3\n", "line 4: t_seconds 30 is not after the previous row's"),
        ('t_seconds,total\n0,"1\n', "line 2"),
    ],
)
def test_malformed_trace_names_the_line(text, message):
    with pytest.raises(SimulateError, match=message):
        parse_trace(text, "trace.csv")


HEADER = "apiVersion: llmfleet.dev/v1alpha1\nkind: AutoscalePolicy\nmetadata: {name: p}\n"


@pytest.mark.parametrize(
    "text,message",
    [
        (HEADER + "spec:\n  maxReplicas: [4\n", r"policy.yaml line 6, column 1: invalid YAML"),
        (HEADER + "spec:\n\tmaxReplicas: 4\n", r"policy.yaml line 5, column 1: invalid YAML"),
        ("", "no YAML document"),
        ("- a\n- b\n", "line 1: expected a mapping"),
        (
            "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\n",
            "line 2: kind is 'HorizontalPodAutoscaler'",
        ),
        ("apiVersion: llmfleet.dev/v2\nkind: AutoscalePolicy\n", "line 1: apiVersion is 'llmfleet.dev/v2'"),
        (
            HEADER + "spec:\n  maxReplicas: 4\n  metric:\n    targetAverageValue: -1\n",
            "line 7: spec.metric.targetAverageValue: Input should be greater than 0",
        ),
        (
            HEADER + "spec:\n  maxReplicas: 4\n  metric: {targetAverageValue: 1}\n  behavior:\n    scaleUp:\n"
            "      policies:\n      - {type: Pods, value: 4, periodSeconds: 3600}\n",
            r"line 10: spec.behavior.scaleUp.policies\[0\].periodSeconds",
        ),
        (
            HEADER + "spec:\n  minReplicas: 5\n  maxReplicas: 4\n  metric: {targetAverageValue: 1}\n",
            "line 4: spec: minReplicas must be less than or equal to maxReplicas",
        ),
        (HEADER + "---\n" + HEADER, "line 5: more than one AutoscalePolicy"),
    ],
)
def test_malformed_policy_names_the_line(text, message):
    with pytest.raises(SimulateError, match=message):
        parse_policy(text, "policy.yaml")


def test_other_documents_in_the_manifest_are_skipped():
    text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n---\n" + POLICY.read_text()
    assert parse_policy(text).metadata.name == "chat-policy"


def test_cli_prints_csv(capsys):
    code = main(
        [
            "simulate",
            "--policy",
            str(POLICY),
            "--trace",
            str(TRACE),
            "--initial-replicas",
            "1",
            "--startup-seconds",
            "30",
        ]
    )
    assert code == 0
    assert capsys.readouterr().out == EXPECTED


def test_cli_error_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "trace.csv"
    bad.write_text("t_seconds,total\n0,1\n15,lots\n")
    code = main(["simulate", "--policy", str(POLICY), "--trace", str(bad)])
    err = capsys.readouterr().err
    assert code == 2
    assert err == f"llmfleet-operator simulate: {bad} line 3: total 'lots' is not a number\n"
    assert main(["simulate", "--policy", str(tmp_path / "missing.yaml"), "--trace", str(TRACE)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_plot_without_matplotlib_says_what_to_install(tmp_path, capsys, monkeypatch):
    # The operator's install leaves matplotlib out; asking for a plot says so before any output.
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    code = main(["simulate", "--policy", str(POLICY), "--trace", str(TRACE), "--plot", str(tmp_path / "p.png")])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert "--plot needs matplotlib" in err and "pip install matplotlib" in err
    assert not (tmp_path / "p.png").exists()


def test_cli_schedule_start_time(capsys):
    # Monday 10:00 in Berlin: the weekday floor of 2 is in force from the first sync.
    code = main(
        [
            "simulate",
            "--policy",
            str(POLICY),
            "--trace",
            str(TRACE),
            "--initial-replicas",
            "1",
            "--start",
            "2024-01-01T10:00:00+01:00",
        ]
    )
    assert code == 0
    assert capsys.readouterr().out.splitlines()[1] == "0,2,1,2,"  # a bounds correction: no metric recommendation


def test_run_refuses_contradictory_flags(capsys):
    assert main(["run", "--standalone", "--peering", "llmfleet"]) == 2
    assert "exclude each other" in capsys.readouterr().err


def test_console_script_entry_point():
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from llmfleet.operator.cli import main; sys.exit(main())",
            "simulate",
            "--policy",
            str(POLICY),
            "--trace",
            "/nonexistent.csv",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_load_is_piecewise_constant():
    from llmfleet.operator.simulate import load_at

    trace = [TracePoint(10, 5), TracePoint(20, 7)]
    assert [load_at(trace, t) for t in (0, 9.9, 10, 19, 20, 100)] == [0, 0, 5, 5, 7, 7]
