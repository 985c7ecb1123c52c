"""Best-model promotion: which trial wins, and a pointer that never names a half-written model."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kubeflow_katib_api.models.v1beta1_experiment import V1beta1Experiment

from katib_nas_contract.best import (
    Best,
    RuledOut,
    best_from_experiment,
    best_from_records,
    choose,
    experiment_finished,
    publish,
)
from katib_nas_contract.serving_cost import Budget
from katib_nas_server.model import ModelNotFound, resolve
from katib_nas_server.promote import KatibSource, RecordsSource, run


def record(
    root: Path,
    trial: str,
    metrics: dict[str, Any] | None,
    complete: bool = True,
    model: bool = True,
    cost: dict[str, Any] | None = None,
) -> None:
    path = root / trial
    path.mkdir(parents=True)
    if metrics is not None:
        (path / "metrics.json").write_text(json.dumps(metrics))
    if cost is not None:
        (path / "serving_cost.json").write_text(json.dumps(cost))
    if model:
        (path / "model.onnx").write_bytes(b"onnx")
    if complete:
        (path / "COMPLETE").write_bytes(b"")


@pytest.fixture
def trials(tmp_path: Path) -> Path:
    exp = tmp_path / "exp"
    record(exp, "exp-a", {"accuracy": 0.95, "loss": 0.2, "ended": "completed"})
    record(exp, "exp-b", {"accuracy": 0.97, "loss": 0.12, "ended": "early_stopped"})
    record(exp, "exp-c", {"accuracy": 0.97, "loss": 0.10, "ended": "completed"})  # ties with b
    record(exp, "exp-d", {"accuracy": 0.99}, complete=False)  # still running / interrupted
    record(exp, "exp-e", None, complete=False, model=False)  # failed before any epoch
    record(exp, "exp-f", {"accuracy": 0.999}, complete=True, model=False)  # no model: not servable
    (exp / "stray-file").write_text("x")
    return exp


def test_records_pick_the_best_complete_trial_and_break_ties_by_name(trials: Path) -> None:
    assert best_from_records(trials) == Best("exp-b", "accuracy", 0.97, "records")
    assert best_from_records(trials, "loss", "minimize") == Best("exp-c", "loss", 0.10, "records")
    assert best_from_records(trials.parent / "missing") is None


def katib_experiment(best_trial: str | None, finished: bool, goal: str = "maximize") -> dict[str, Any]:
    experiment: dict[str, Any] = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": "exp", "namespace": "ml"},
        "spec": {
            "objective": {"type": goal, "objectiveMetricName": "accuracy", "additionalMetricNames": ["loss"]},
            "maxTrialCount": 6,
        },
        "status": {
            "conditions": [
                {"type": "Created", "status": "True"},
                {"type": "Running", "status": "False" if finished else "True"},
            ]
            + ([{"type": "Succeeded", "status": "True"}] if finished else []),
            "trials": 6,
            "trialsSucceeded": 4,
        },
    }
    if best_trial:
        experiment["status"]["currentOptimalTrial"] = {
            "bestTrialName": best_trial,
            "parameterAssignments": [{"name": "lr", "value": "0.003"}],
            "observation": {
                "metrics": [
                    {"name": "accuracy", "min": "0.41", "max": "0.98", "latest": "0.97"},
                    {"name": "loss", "min": "0.1", "max": "1.9", "latest": "0.11"},
                ]
            },
        }
    # Shaped like Katib's own objects: its API models take it without losing a field.
    assert V1beta1Experiment.from_dict(experiment).to_dict() == experiment
    return experiment


def test_katib_status_is_used_once_the_record_is_complete(trials: Path) -> None:
    assert best_from_experiment(katib_experiment("exp-a", False), trials) == Best("exp-a", "accuracy", 0.98, "katib")
    assert best_from_experiment(katib_experiment("exp-d", False), trials) is None  # record not complete yet
    assert best_from_experiment(katib_experiment(None, False), trials) is None
    assert best_from_experiment(katib_experiment("exp-a", False, goal="minimize"), trials) is not None
    assert not experiment_finished(katib_experiment("exp-a", False))
    assert experiment_finished(katib_experiment("exp-a", True))


def test_publish_is_atomic_idempotent_and_refuses_incomplete_records(trials: Path) -> None:
    assert publish(trials, Best("exp-b", "accuracy", 0.97, "records"))
    pointer = json.loads((trials / "best.json").read_text())
    assert pointer["trial"] == "exp-b" and pointer["model"] == "exp-b/model.onnx"
    assert not publish(trials, Best("exp-b", "accuracy", 0.97, "records"))
    with pytest.raises(ValueError, match="exp-d: its record is not complete"):
        publish(trials, Best("exp-d", "accuracy", 0.99, "katib"))
    assert json.loads((trials / "best.json").read_text())["trial"] == "exp-b"
    assert sorted(p.name for p in trials.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("damaged", ["[1, 2]", '"exp-a"', "3", "null", "{not json"])
def test_publish_replaces_a_damaged_pointer(trials: Path, damaged: str) -> None:
    # A pointer of the wrong JSON type (hand-edited, or another tool's) is no pointer: promotion
    # writes a good one instead of failing on it.
    (trials / "best.json").write_text(damaged)
    assert publish(trials, Best("exp-b", "accuracy", 0.97, "records"))
    assert json.loads((trials / "best.json").read_text())["trial"] == "exp-b"


def test_watch_moves_the_pointer_when_a_better_trial_completes(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    record(exp, "exp-a", {"accuracy": 0.90})
    source = RecordsSource(exp, "accuracy", "maximize")
    steps: list[str] = []

    def sleep(_: float) -> None:  # between polls, the search goes on
        steps.append(json.loads((exp / "best.json").read_text())["trial"])
        if len(steps) == 1:
            record(exp, "exp-b", {"accuracy": 0.93}, complete=False)  # better, but not complete yet
        elif len(steps) == 2:
            (exp / "exp-b" / "COMPLETE").write_bytes(b"")
        elif len(steps) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(source, exp, "watch", interval=0, timeout=0, sleep=sleep, log=lambda _: None)
    assert steps == ["exp-a", "exp-a", "exp-b"]


def test_first_waits_for_a_complete_trial_and_gives_up_on_timeout(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    exp.mkdir()
    lines: list[str] = []
    assert (
        run(RecordsSource(exp, "accuracy", "maximize"), exp, "first", interval=0.01, timeout=0.05, log=lines.append)
        == 1
    )
    assert lines[0] == f"waiting for a complete trial in {exp}"
    assert lines[-1] == "gave up after 0.05s without a best model"

    # A first look at the records slower than the timeout (a slow volume) still says what it awaited.
    class SlowRecords(RecordsSource):
        def poll(self) -> Any:
            time.sleep(0.1)
            return super().poll()

    lines.clear()
    slow = SlowRecords(exp, "accuracy", "maximize")
    assert run(slow, exp, "first", interval=0.01, timeout=0.05, log=lines.append) == 1
    assert lines == [f"waiting for a complete trial in {exp}", "gave up after 0.05s without a best model"]
    record(exp, "exp-a", {"accuracy": 0.9})
    assert (
        run(RecordsSource(exp, "accuracy", "maximize"), exp, "first", interval=0.01, timeout=1, log=lines.append) == 0
    )


def test_promote_command_on_records(trials: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "katib_nas_server",
            "promote",
            "--first",
            "--source",
            "records",
            "--experiment",
            trials.name,
            "--model-root",
            str(trials.parent),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "best model: exp-b (accuracy=0.97, from records)\n"


def test_the_charts_promotion_commands_are_what_the_server_image_accepts() -> None:
    import argparse

    from katib_nas_server import promote

    from .conftest import ROOT, by_kind, helm_template

    docs = helm_template(ROOT / "values" / "microk8s.yaml")
    pods = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d["spec"]["template"]["spec"]
        for d in by_kind(docs, "Deployment") + by_kind(docs, "Job")
    }
    commands = [pods["extract"]["containers"][0]["command"]]
    commands += [pods[step]["initContainers"][0]["command"] for step in ("batch", "server")]
    parser = argparse.ArgumentParser()
    promote.add_arguments(parser)
    modes = []
    for command in commands:
        assert command[:4] == ["python", "-m", "katib_nas_server", "promote"]
        args = parser.parse_args(command[4:])
        assert (args.experiment, args.namespace, args.model_root) == ("nas-katib-nas", "ml", Path("/models"))
        modes.append(args.mode)
    assert modes == ["watch", "final", "first"]


def cost(p99: float, size: int) -> dict[str, Any]:
    return {"latency_p50_ms": p99 / 2, "latency_p99_ms": p99, "parameters": size // 4, "model_bytes": size}


@pytest.fixture
def costed(tmp_path: Path) -> Path:
    """A CNN that is accurate and slow, a larger MLP, a small fast MLP, and a record measured by no trainer."""
    exp = tmp_path / "exp"
    record(exp, "exp-cnn", {"accuracy": 0.99}, cost=cost(0.9, 400_000))
    record(exp, "exp-mlp-big", {"accuracy": 0.98}, cost=cost(0.3, 900_000))
    record(exp, "exp-mlp", {"accuracy": 0.96}, cost=cost(0.05, 20_000))
    record(exp, "exp-old", {"accuracy": 0.995})  # no serving_cost.json: cannot be shown to fit
    record(exp, "exp-running", {"accuracy": 0.999}, complete=False, cost=cost(0.01, 100))
    return exp


def test_the_budget_promotes_the_most_accurate_model_that_fits_and_names_the_ones_it_ruled_out(costed: Path) -> None:
    choice = choose(costed, budget=Budget(latency_p99_ms=0.5))
    assert choice.best == Best("exp-mlp-big", "accuracy", 0.98, "records")
    assert choice.ruled_out == (
        RuledOut("exp-old", 0.995, "no serving cost measured"),
        RuledOut("exp-cnn", 0.99, "latency_p99_ms 0.9 ms > 0.5 ms"),
    )
    both = choose(costed, budget=Budget(latency_p99_ms=0.5, model_bytes=500_000))
    assert both.best == Best("exp-mlp", "accuracy", 0.96, "records")
    assert [r.trial for r in both.overtaken()] == ["exp-old", "exp-cnn", "exp-mlp-big"]
    assert both.ruled_out[2].why == "model_bytes 900000 bytes > 500000 bytes"
    # No budget: the most accurate complete trial, as before.
    assert choose(costed).best == best_from_records(costed) == Best("exp-old", "accuracy", 0.995, "records")
    assert choose(costed).ruled_out == ()
    assert both.best is not None and publish(costed, both.best, both)
    pointer = json.loads((costed / "best.json").read_text())
    assert pointer["trial"] == "exp-mlp" and pointer["budget"] == {"latency_p99_ms": 0.5, "model_bytes": 500000}
    assert [r["trial"] for r in pointer["ruled_out"]] == ["exp-old", "exp-cnn", "exp-mlp-big"]


def test_a_budget_no_model_fits_is_said_in_the_pointer_and_the_batch_step_fails(costed: Path) -> None:
    publish(costed, Best("exp-cnn", "accuracy", 0.99, "records"))  # served before the budget was set
    lines: list[str] = []
    source = KatibSource(costed, lambda: katib_experiment("exp-cnn", True), Budget(latency_p99_ms=0.01))
    assert run(source, costed, "final", interval=0, timeout=0, log=lines.append) == 1
    reason = (
        "no complete trial fits the serving budget (p99 latency <= 0.01 ms): 4 ruled out, the best exp-old "
        "(accuracy=0.995: no serving cost measured); raise promotion.budget or search smaller models"
    )
    assert lines == [reason, f"the search finished and {reason}; nothing to serve"]
    pointer = json.loads((costed / "best.json").read_text())
    assert pointer["trial"] is None and pointer["reason"] == reason
    # The server follows the pointer: it says why there is nothing to serve instead of keeping the old model's name.
    with pytest.raises(ModelNotFound, match="best.json: no complete trial fits the serving budget"):
        resolve(costed)
    # Waiting for a model (the server's init container) does not take the no-fit pointer for one.
    assert run(source, costed, "first", interval=0.01, timeout=0.05, log=lines.append) == 1
    # Trial records alone cannot tell that the search is over: --final keeps waiting for a trial that fits.
    records = RecordsSource(costed, "accuracy", "maximize", Budget(latency_p99_ms=0.01))
    waited: list[str] = []
    assert run(records, costed, "final", interval=0.01, timeout=0.05, log=waited.append) == 1
    assert waited[-1] == "gave up after 0.05s without a finished search"


def test_katib_source_with_a_budget_chooses_from_the_records_by_the_experiments_objective(costed: Path) -> None:
    experiment = katib_experiment("exp-cnn", True)  # Katib's optimal trial is over the budget
    choice, finished = KatibSource(costed, lambda: experiment, Budget(latency_p99_ms=0.5)).poll()
    assert finished and choice.best == Best("exp-mlp-big", "accuracy", 0.98, "records")
    choice, _ = KatibSource(costed, lambda: experiment).poll()
    assert choice.best == Best("exp-cnn", "accuracy", 0.98, "katib")  # no budget: Katib decides, as before


def test_promote_command_with_a_budget_logs_what_it_ruled_out(costed: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "katib_nas_server", "promote", "--first", "--source", "records"]
        + ["--experiment", costed.name, "--model-root", str(costed.parent), "--max-latency-p99-ms=0.5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "best model: exp-mlp-big (accuracy=0.98, from records)",
        "within the serving budget (p99 latency <= 0.5 ms); ruled out as better but over it: exp-old "
        "(accuracy=0.995: no serving cost measured); exp-cnn (accuracy=0.99: latency_p99_ms 0.9 ms > 0.5 ms) "
        "(2 over it in all, listed in best.json)",
    ]


@pytest.mark.parametrize("flag", ["--max-latency-p99-ms=0", "--max-latency-p99-ms=nan", "--max-model-bytes=-3"])
def test_promote_refuses_a_budget_that_is_not_positive(flag: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "katib_nas_server", "promote", "--first", "--experiment=e", f"--model-root={tmp_path}"]
        + [flag],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stderr.splitlines()[-1].startswith("katib_nas_server promote: error: argument")


@pytest.mark.parametrize("mode", ["fastapi", "kserve"])
def test_the_budget_reaches_every_promotion_step(mode: str) -> None:
    """One values setting: the extraction Deployment, the server's init container (its first model; its hot
    swaps follow the pointer the extraction Deployment keeps) and the batch Job's init container all promote by it."""
    import argparse

    from katib_nas_server import promote

    from .conftest import ROOT, helm_template

    values = {"promotion": {"budget": {"latencyP99Ms": 0.25, "modelBytes": 5_000_000}}, "server": {"mode": mode}}
    docs = helm_template(ROOT / "values" / "k3s-gpu.yaml", values=values)
    commands = []
    for d in docs:
        if d["kind"] in ("Deployment", "Job"):
            spec = d["spec"]["template"]["spec"]
        elif d["kind"] == "InferenceService":
            spec = d["spec"]["predictor"]
        else:
            continue
        commands += [
            c["command"] for c in spec.get("initContainers", []) + spec["containers"] if "promote" in c["command"]
        ]
    parser = argparse.ArgumentParser()
    promote.add_arguments(parser)
    parsed = [parser.parse_args(command[4:]) for command in commands]
    # KServe's predictor has no init container (Knative forbids them): it follows the pointer extraction keeps.
    assert sorted(a.mode for a in parsed) == (["final", "first", "watch"] if mode == "fastapi" else ["final", "watch"])
    assert {promote.budget_from(a) for a in parsed} == {Budget(latency_p99_ms=0.25, model_bytes=5_000_000)}
    unset = helm_template(ROOT / "values" / "k3s-gpu.yaml")
    assert not any("--max-" in line for line in json.dumps(unset).split('"'))
