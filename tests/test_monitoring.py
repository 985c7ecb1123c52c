"""The chart's PrometheusRule judged by Prometheus itself: promtool (built from the Go module proxy by
ci/install-tools.sh) checks the rendered rule groups and runs them on synthetic series, each alert with
series that should fire it and series that should not, at thresholds set through the values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import KATIB_API, ROOT, by_kind, helm_template, run, tool

APIS = (KATIB_API, "monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule")
GOLDEN = ROOT / "tests" / "data" / "expected" / "prometheusrule.yaml"
CI_FILE = ROOT / "charts" / "katib-nas" / "ci" / "enable-prometheusrule-values.yaml"

# Thresholds away from the defaults, so the test also shows that each one reaches its rule.
VALUES: dict[str, Any] = {
    "server": {"serviceMonitor": {"enabled": True}},
    "prometheusRule": {
        "enabled": True,
        "alertLabels": {"severity": "page"},
        "server": {
            "window": "5m",
            "errorRatio": 0.1,
            "latencyP99Seconds": 0.25,
            "sustainedFor": "10m",
            "staleModelAfter": "10m",
        },
        "search": {"noTrialFinishedFor": "1h", "failedTrials": 2, "failedTrialsWindow": "1h"},
    },
}

# The labels a scrape gives the series: the server's through the chart's ServiceMonitor (release nas in
# namespace ml), Katib's through its controller's prometheus.io annotations (namespace kubeflow, so the
# trial's namespace label becomes exported_namespace).
SERVER = 'namespace="ml", service="nas-katib-nas-server", job="nas-katib-nas-server", pod="nas-katib-nas-server-1"'
SERVER_2 = SERVER.replace("server-1", "server-2")
OTHER_SERVER = 'namespace="ml", service="other-katib-nas-server", job="other-katib-nas-server", pod="other-1"'
REQUESTS, INFER = "katib_nas_requests_total", "/v2/models/{name}/infer"
BEST, SERVED = "katib_nas_best_published_timestamp_seconds", "katib_nas_model_published_timestamp_seconds"
KATIB = 'namespace="kubeflow", job="katib-controller", exported_namespace="ml"'
KATIB_ELSEWHERE = 'namespace="kubeflow", job="katib-controller", exported_namespace="research"'


def series(metric: str, labels: str, values: str) -> dict[str, str]:
    """One promtool input series: labels as PromQL writes them, values in promtool's expanding notation."""
    return {"series": f"{metric}{{{labels}}}", "values": values}


def steps(*counts: int, minutes: int = 30) -> str:
    """A gauge that holds each count for `minutes` minutes (one sample a minute)."""
    return " ".join(f"{c}x{minutes - 1}" for c in counts)


def rule_groups(values: dict[str, Any]) -> list[dict[str, Any]]:
    (rule,) = by_kind(helm_template(values=values, api_versions=APIS), "PrometheusRule")
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def alert(name: str, labels: dict[str, str], description: str, summary: str) -> dict[str, Any]:
    return {
        "exp_labels": {"alertname": name, "severity": "page", **labels},
        "exp_annotations": {"summary": summary, "description": description},
    }


ERRORS_SUMMARY = "The katib-nas server answers scoring requests with 5xx errors."
SLOW_SUMMARY = "The katib-nas server's p99 scoring latency is over its threshold."
STALE_SUMMARY = "A katib-nas server pod serves an older model than the best one published."
STUCK_SUMMARY = "Katib trials are running but none has finished for a while."
FAILED_SUMMARY = "Katib trials failed."
EXPERIMENT_SUMMARY = "A Katib Experiment failed."
SERVICE = {"namespace": "ml", "service": "nas-katib-nas-server"}
SEARCH = {"exported_namespace": "ml"}


def unit_tests() -> list[dict[str, Any]]:
    """promtool test cases: each alert fires on its own series, after its `for`, and nowhere else."""
    errors = {
        "interval": "1m",
        "input_series": [
            # 20% of this release's scoring requests fail ...
            series(REQUESTS, f'{SERVER}, route="/predict", method="POST", code="200"', "0+80x40"),
            series(REQUESTS, f'{SERVER}, route="/predict", method="POST", code="500"', "0+20x40"),
            # ... while probes answered 503 before a model was loaded, unknown paths and other releases
            # do not count.
            series(REQUESTS, f'{SERVER}, route="/v2/health/ready", method="GET", code="503"', "0+1000x40"),
            series(REQUESTS, f'{SERVER}, route="unmatched", method="POST", code="500"', "0+1000x40"),
            series(REQUESTS, f'{OTHER_SERVER}, route="/predict", method="POST", code="500"', "0+50x40"),
        ],
        "alert_rule_test": [
            {"eval_time": "8m", "alertname": "KatibNasServerErrors", "exp_alerts": []},  # still pending
            {
                "eval_time": "20m",
                "alertname": "KatibNasServerErrors",
                "exp_alerts": [
                    alert(
                        "KatibNasServerErrors",
                        SERVICE,
                        "20% of the scoring requests to ml/nas-katib-nas-server were answered 5xx over 5m "
                        "(threshold 0.1); the server log says why.",
                        ERRORS_SUMMARY,
                    )
                ],
            },
        ],
    }
    few_errors = {
        "interval": "1m",
        "input_series": [
            series(REQUESTS, f'{SERVER}, route="{INFER}", method="POST", code="200"', "0+95x40"),
            series(REQUESTS, f'{SERVER}, route="{INFER}", method="POST", code="503"', "0+5x40"),
        ],
        "alert_rule_test": [{"eval_time": "30m", "alertname": "KatibNasServerErrors", "exp_alerts": []}],
    }

    def buckets(route: str, counts: dict[str, int], server: str = SERVER) -> list[dict[str, str]]:
        metric = "katib_nas_request_duration_seconds_bucket"
        return [series(metric, f'{server}, route="{route}", le="{le}"', f"0+{n}x40") for le, n in counts.items()]

    slow = {
        "interval": "1m",
        # Every scoring request takes 0.25 s to 0.5 s: p99 interpolates to 0.4975 s.
        "input_series": buckets("/predict", {"0.1": 0, "0.25": 0, "0.5": 100, "+Inf": 100}),
        "alert_rule_test": [
            {"eval_time": "8m", "alertname": "KatibNasServerSlow", "exp_alerts": []},
            {
                "eval_time": "20m",
                "alertname": "KatibNasServerSlow",
                "exp_alerts": [
                    alert(
                        "KatibNasServerSlow",
                        SERVICE,
                        "p99 latency of scoring requests to ml/nas-katib-nas-server is 497.5ms over 5m "
                        "(threshold 0.25s): too few replicas or cores, or oversized batches.",
                        SLOW_SUMMARY,
                    )
                ],
            },
        ],
    }
    fast = {
        "interval": "1m",
        # Scoring under 0.1 s; slow scrapes of /metrics and another release's slow scoring do not count.
        "input_series": buckets(INFER, {"0.1": 100, "0.25": 100, "0.5": 100, "+Inf": 100})
        + buckets("/metrics", {"0.1": 0, "0.25": 0, "0.5": 0, "+Inf": 100})
        + buckets("/predict", {"0.1": 0, "0.25": 0, "0.5": 0, "+Inf": 100}, OTHER_SERVER),
        "alert_rule_test": [{"eval_time": "30m", "alertname": "KatibNasServerSlow", "exp_alerts": []}],
    }
    stale = {
        "interval": "1m",
        "input_series": [
            # Pod 1: best.json moves to a model published at t=2000 s at minute 5; the pod keeps the old one.
            series(BEST, SERVER, "1000x4 2000x35"),
            series(SERVED, SERVER, "1000x40"),
            # Pod 2 swapped the new model in; a pod serving one trial record as is exports 0 for both.
            series(BEST, OTHER_SERVER, "1000x4 2000x35"),
            series(SERVED, OTHER_SERVER, "1000x5 2000x35"),
            series(BEST, SERVER_2, "0x40"),
            series(SERVED, SERVER_2, "0x40"),
        ],
        "alert_rule_test": [
            {"eval_time": "12m", "alertname": "KatibNasServedModelStale", "exp_alerts": []},
            {
                "eval_time": "16m",
                "alertname": "KatibNasServedModelStale",
                "exp_alerts": [
                    alert(
                        "KatibNasServedModelStale",
                        {**SERVICE, "job": "nas-katib-nas-server", "pod": "nas-katib-nas-server-1"},
                        "Pod ml/nas-katib-nas-server-1 still serves a model published before the best model "
                        "best.json names (published 1970-01-01 00:33:20 +0000 UTC); the server log says why it "
                        "cannot load it.",
                        STALE_SUMMARY,
                    )
                ],
            },
        ],
    }

    def trials(status: str, values: str, where: str = KATIB) -> dict[str, str]:
        return series("katib_trials_current", f'{where}, status="{status}"', values)

    stuck = {
        "interval": "1m",
        # One trial Pending (Created), one Running, three finished long ago: nothing finishes for 2 h.
        # Another namespace's stuck trials are not this release's.
        "input_series": [
            trials("Created", "1x120"),
            trials("Running", "1x120"),
            trials("Succeeded", "3x120"),
            trials("Running", "4x120", KATIB_ELSEWHERE),
        ],
        "alert_rule_test": [
            {"eval_time": "50m", "alertname": "KatibNasNoTrialFinished", "exp_alerts": []},  # younger than 1 h
            {
                "eval_time": "90m",
                "alertname": "KatibNasNoTrialFinished",
                "exp_alerts": [
                    alert(
                        "KatibNasNoTrialFinished",
                        SEARCH,
                        "2 trials in namespace ml are Created or Running and none has finished in 1h: pods Pending "
                        "(kubectl describe pod), a trainer hung, or trials longer than "
                        "prometheusRule.search.noTrialFinishedFor.",
                        STUCK_SUMMARY,
                    )
                ],
            },
        ],
    }
    progressing = {
        "interval": "1m",
        # Two trials always running; trials finish at 100, 140, 151 and 180 min, the first three
        # early-stopped (they count, though Katib's succeeded counter leaves them out), the first when no
        # finished trial existed an hour before. Then the search ends: nothing active, nothing to alert.
        "input_series": [
            trials("Running", steps(2, 2, 2, 2, 2, 2, 2) + " _x60"),
            trials("EarlyStopped", "_x99 " + steps(1, 2, 3, minutes=40) + " 3x120"),
            trials("Succeeded", "_x150 1x120"),
        ],
        "alert_rule_test": [
            {
                "eval_time": "80m",  # nothing has finished yet after 80 min
                "alertname": "KatibNasNoTrialFinished",
                "exp_alerts": [
                    alert(
                        "KatibNasNoTrialFinished",
                        SEARCH,
                        "2 trials in namespace ml are Created or Running and none has finished in 1h: pods Pending "
                        "(kubectl describe pod), a trainer hung, or trials longer than "
                        "prometheusRule.search.noTrialFinishedFor.",
                        STUCK_SUMMARY,
                    )
                ],
            },
            {"eval_time": "110m", "alertname": "KatibNasNoTrialFinished", "exp_alerts": []},
            {"eval_time": "190m", "alertname": "KatibNasNoTrialFinished", "exp_alerts": []},
            {"eval_time": "260m", "alertname": "KatibNasNoTrialFinished", "exp_alerts": []},
        ],
    }
    failed = {
        "interval": "1m",
        # The first failed trial at 30 min, the second at 40 min: two in the hour; an hour later none new.
        "input_series": [
            trials("Running", "2x150"),
            trials("Failed", "_x29 1x9 2x110"),
            trials("Failed", "5x150", KATIB_ELSEWHERE),
        ],
        "alert_rule_test": [
            {"eval_time": "35m", "alertname": "KatibNasTrialsFailed", "exp_alerts": []},
            {
                "eval_time": "45m",
                "alertname": "KatibNasTrialsFailed",
                "exp_alerts": [
                    alert(
                        "KatibNasTrialsFailed",
                        SEARCH,
                        "2 trials in namespace ml failed in the last 1h; kubectl -n ml get trials shows which, and "
                        "their pods' logs why (the Experiment fails after experiment.maxFailedTrialCount).",
                        FAILED_SUMMARY,
                    )
                ],
            },
            {"eval_time": "110m", "alertname": "KatibNasTrialsFailed", "exp_alerts": []},
        ],
    }
    experiment_failed = {
        "interval": "1m",
        "input_series": [
            series("katib_experiments_current", f'{KATIB}, status="Running"', "1x9"),
            series("katib_experiments_current", f'{KATIB}, status="Failed"', "_x9 1x30"),
            series("katib_experiments_current", f'{KATIB_ELSEWHERE}, status="Failed"', "1x40"),
        ],
        "alert_rule_test": [
            {"eval_time": "5m", "alertname": "KatibNasExperimentFailed", "exp_alerts": []},
            {
                "eval_time": "15m",
                "alertname": "KatibNasExperimentFailed",
                "exp_alerts": [
                    alert(
                        "KatibNasExperimentFailed",
                        {
                            "namespace": "kubeflow",
                            "job": "katib-controller",
                            "exported_namespace": "ml",
                            "status": "Failed",
                        },
                        "Experiments failed in namespace ml: 1 (too many failed trials, or a suggestion that "
                        "cannot run); kubectl -n ml get experiments shows which.",
                        EXPERIMENT_SUMMARY,
                    )
                ],
            },
        ],
    }
    return [errors, few_errors, slow, fast, stale, stuck, progressing, failed, experiment_failed]


def promtool_test(groups: list[dict[str, Any]], tmp_path: Path) -> tuple[int, str]:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": unit_tests()}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    proc = run([tool("promtool"), "test", "rules", str(tmp_path / "tests.yaml")], check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_promtool_accepts_the_rendered_rules(tmp_path: Path) -> None:
    groups = rule_groups(VALUES)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    proc = run([tool("promtool"), "check", "rules", str(tmp_path / "rules.yaml")], check=False)
    assert proc.returncode == 0 and "SUCCESS: 6 rules found" in proc.stdout, proc.stdout + proc.stderr


def test_each_alert_fires_on_its_series_and_nowhere_else(tmp_path: Path) -> None:
    code, output = promtool_test(rule_groups(VALUES), tmp_path)
    assert code == 0, output
    assert "SUCCESS" in output, output


@pytest.mark.parametrize(
    ("change", "silenced"),
    [
        ({"server": {"errorRatio": 0.3}}, "KatibNasServerErrors"),
        ({"server": {"latencyP99Seconds": 0.5}}, "KatibNasServerSlow"),
        ({"server": {"staleModelAfter": "20m"}}, "KatibNasServedModelStale"),
        ({"search": {"noTrialFinishedFor": "2h"}}, "KatibNasNoTrialFinished"),
        ({"search": {"failedTrials": 3}}, "KatibNasTrialsFailed"),
        (
            {"search": {"namespaceLabel": "namespace"}},
            "KatibNasExperimentFailed KatibNasNoTrialFinished KatibNasTrialsFailed",
        ),
    ],
)
def test_promtool_fails_the_same_series_under_other_values(
    change: dict[str, dict[str, Any]], silenced: str, tmp_path: Path
) -> None:
    """The unit tests have teeth: with one value changed, the alert it governs no longer fires where the
    series above expect it, and promtool says so."""
    rule = VALUES["prometheusRule"]
    values = {**VALUES, "prometheusRule": {**rule, **{k: {**rule.get(k, {}), **v} for k, v in change.items()}}}
    code, output = promtool_test(rule_groups(values), tmp_path)
    assert code == 1, output
    failing = {line.split("alertname: ")[1].split(",")[0] for line in output.splitlines() if "alertname: " in line}
    assert failing == set(silenced.split()), output


class BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the rules' expressions) as literal blocks, so the golden file reads like PromQL."""


BlockDumper.add_representer(
    str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None)
)


def test_prometheus_rule_render_matches_golden(request: pytest.FixtureRequest) -> None:
    (rule,) = by_kind(helm_template(CI_FILE, api_versions=APIS), "PrometheusRule")
    text = yaml.dump(rule, Dumper=BlockDumper, sort_keys=False, width=200)
    if request.config.getoption("--update-golden"):
        GOLDEN.write_text(text)
    assert GOLDEN.is_file(), f"{GOLDEN} missing: run pytest --update-golden"
    assert text == GOLDEN.read_text(), f"render of {CI_FILE} changed; review and run pytest --update-golden"
