"""The local runner end to end on digits: real trainer processes, Optuna, the best pointer, batch
scoring, Ctrl-C and resume, and the report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from generator.errors import LocalRunError
from generator.local.plan import plan, trial_argv
from generator.local.samplers import sampler_for
from generator.models import Algorithm, Experiment
from generator.validate import validate_file

from .conftest import ROOT, by_kind, free_port, helm_template, tool_env, wait_for

BASE = yaml.safe_load((ROOT / "values" / "microk8s.yaml").read_text())


def values_file(tmp_path: Path, experiment: dict[str, Any], trial: dict[str, Any]) -> Path:
    data = {**BASE, "experiment": {**BASE["experiment"], **experiment}, "trial": {**BASE["trial"], **trial}}
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def katib_nas(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "generator", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=tool_env(), cwd=ROOT, timeout=600, **kwargs)


# Two learning rates that learn and two that barely move, tried one at a time in the grid's seeded
# order (a good one first), so the median rule has a finished peer when the weak ones run.
SEARCH: dict[str, Any] = {
    "name": "digits-local",
    "parallelTrialCount": 1,
    "maxTrialCount": 4,
    "maxFailedTrialCount": 1,
    "algorithm": {"algorithmName": "grid", "algorithmSettings": [{"name": "random_state", "value": "1"}]},
    # Katib's grid (its optuna service) cannot resume FromVolume; the same file must validate here.
    "resumePolicy": "LongRunning",
    "parameters": [
        {
            "name": "lr",
            "parameterType": "categorical",
            "feasibleSpace": {"list": ["0.00001", "0.00002", "0.01", "0.02"]},
        }
    ],
    "earlyStopping": {
        "algorithmName": "median",
        "algorithmSettings": [{"name": "min_trials_required", "value": "1"}, {"name": "start_step", "value": "2"}],
    },
}
TRIAL: dict[str, Any] = {"epochs": 6, "extraArgs": ["--units=64", "--num-layers=1", "--optimizer=sgd"]}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    tmp = tmp_path_factory.mktemp("local")
    values = values_file(tmp, SEARCH, TRIAL)
    proc = katib_nas("run", "--local", str(values), "--out", str(tmp / "out"))
    return proc, values, tmp / "out" / "models" / "digits-local"


def test_a_local_search_ends_with_a_best_model_and_batch_predictions(
    local_run: tuple[subprocess.CompletedProcess[str], Path, Path],
) -> None:
    proc, _, experiment = local_run
    assert proc.returncode == 0, proc.stderr
    best = json.loads((experiment / "best.json").read_text())
    record = experiment / best["trial"]
    assert (record / "COMPLETE").is_file() and (record / "model.onnx").is_file()
    assert best["value"] == max(
        json.loads(m.read_text())["accuracy"] for m in experiment.glob("digits-local-*/metrics.json")
    )
    trials = sorted(p.name for p in experiment.glob("digits-local-*"))
    assert trials == [f"digits-local-000{i}" for i in range(4)]
    summary = json.loads((experiment / "batch" / "summary.json").read_text())
    assert summary["trial"] == best["trial"] and summary["count"] == 359
    assert "4 trials done" in proc.stdout and f"best model: {best['trial']}" in proc.stdout


def test_weak_trials_are_stopped_by_the_median_rule(
    local_run: tuple[subprocess.CompletedProcess[str], Path, Path],
) -> None:
    _, _, experiment = local_run
    metrics = {m.parent.name: json.loads(m.read_text()) for m in experiment.glob("digits-local-*/metrics.json")}
    stopped = [name for name, m in metrics.items() if m["stopped_by"] == "median"]
    assert stopped, metrics
    params = {p.parent.name: json.loads(p.read_text())["params"]["lr"] for p in experiment.glob("*/params.json")}
    assert {name for name, lr in params.items() if lr < 0.001} <= set(stopped)  # the two that barely learn
    assert all(metrics[name]["epochs_run"] < 6 for name in stopped)
    best = json.loads((experiment / "best.json").read_text())["trial"]
    assert metrics[best]["ended"] == "completed"


def test_a_rerun_of_a_finished_search_reports_it_as_the_first_run_did(
    local_run: tuple[subprocess.CompletedProcess[str], Path, Path],
) -> None:
    proc, values, experiment = local_run
    stopped = sum(
        json.loads(m.read_text())["stopped_by"] == "median" for m in experiment.glob("digits-local-*/metrics.json")
    )
    again = katib_nas("run", "--local", str(values), "--out", str(values.parent / "out"))
    assert again.returncode == 0, again.stderr
    assert "resuming digits-local: 4 done, 0 failed, 0 interrupted" in again.stderr
    assert f"4 trials done ({stopped} stopped early), 0 failed" in again.stdout
    assert f"4 trials done ({stopped} stopped early), 0 failed" in proc.stdout


def test_the_report_shows_the_search(local_run: tuple[subprocess.CompletedProcess[str], Path, Path]) -> None:
    proc, values, experiment = local_run
    out = values.parent / "out"
    report = katib_nas("report", str(values), "--out", str(out))
    assert report.returncode == 0, report.stderr
    folder = experiment / "report"
    for name in ("objective.png", "curves.png", "importance.png", "parallel.png", "compute.png"):
        assert (folder / name).stat().st_size > 5_000, name
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["trials"] == 4 and summary["stopped_early"] >= 1
    assert summary["epochs_run"] < summary["epochs_planned"] == 24
    page = (folder / "index.html").read_text()
    assert summary["best"]["trial"] in page and 'src="curves.png"' in page


def test_katib_nas_serve_serves_the_best_model_of_the_local_run(
    local_run: tuple[subprocess.CompletedProcess[str], Path, Path],
) -> None:
    _, values, experiment = local_run
    port = free_port()
    cmd = [sys.executable, "-m", "generator", "serve", str(values), "--out", str(values.parent / "out")]
    proc = subprocess.Popen([*cmd, f"--port={port}"], stderr=subprocess.PIPE, text=True, env=tool_env(), cwd=ROOT)
    try:
        assert wait_for(f"http://127.0.0.1:{port}/v2/health/ready", proc)
        meta = httpx.get(f"http://127.0.0.1:{port}/v2/models/digits").json()
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=15)
    assert "serving" in stderr and "Traceback" not in stderr
    assert meta["trial"] == json.loads((experiment / "best.json").read_text())["trial"]


def test_local_trials_get_the_flags_a_trial_pod_gets(tmp_path: Path) -> None:
    values = values_file(tmp_path, SEARCH, TRIAL)
    report = validate_file(values)
    p = plan(report, "nas")
    argv = trial_argv(p, {"lr": "0.01"}, "digits-local-0007", tmp_path / "models")
    docs = helm_template(values)
    container = by_kind(docs, "Experiment")[0]["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    expected = [
        a.replace("${trialParameters.lr}", "0.01")
        .replace("${trialParameters.trialName}", "digits-local-0007")
        .replace("=/models", f"={tmp_path / 'models'}")
        for a in container["args"]
    ]
    # Katib's StdOut collector runs the arguments through `sh -c`: the words that shell makes of them.
    shell = subprocess.run(["sh", "-c", "printf '%s\\0' " + " ".join(expected)], capture_output=True, text=True)
    assert argv == [sys.executable, "-m", "katib_nas_trainer", *shell.stdout.split("\0")[:-1]]
    assert "--early-stopping=median" in argv and "--es-start-step=2" in argv


def test_ctrl_c_stops_cleanly_and_a_rerun_resumes(tmp_path: Path) -> None:
    search = {**SEARCH, "maxTrialCount": 2, "earlyStopping": {"enabled": False}}
    values = values_file(tmp_path, search, {"epochs": 40, "extraArgs": [*TRIAL["extraArgs"], "--patience=100"]})
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "generator", "run", "--local", str(values), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=tool_env(), cwd=ROOT)
    first = out / "models" / "digits-local" / "digits-local-0000"
    deadline = time.monotonic() + 120
    while not (first / "curve.json").is_file() or len(json.loads((first / "curve.json").read_text())) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted: 1 running trial(s) saved their checkpoints" in stderr
    assert not (first / "COMPLETE").exists()
    assert json.loads((first / "status.json").read_text())["state"] == "terminated"

    again = katib_nas("run", "--local", str(values), "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert "1 interrupted trial(s) start again" in again.stderr
    assert "resuming" in (out / "models" / "digits-local" / ".logs" / "digits-local-0000.log").read_text()
    assert json.loads((first / "metrics.json").read_text())["epochs_run"] == 40
    assert sorted(p.name for p in first.parent.glob("digits-local-*")) == ["digits-local-0000", "digits-local-0001"]


def test_failed_trials_past_max_failed_trial_count_stop_the_run(tmp_path: Path) -> None:
    values = values_file(tmp_path, SEARCH, {**TRIAL, "extraArgs": ["--units=0"]})
    proc = katib_nas("run", "--local", str(values), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "2 trials failed, more than experiment.maxFailedTrialCount=1; see the logs in "
        f"{tmp_path / 'out' / 'models' / 'digits-local' / '.logs'}"
    )


def test_a_keras_search_without_tensorflow_says_which_extra_to_install(tmp_path: Path) -> None:
    """`make run` installs the `local` extra, which has no TensorFlow: a Keras values file then
    fails in one line naming the extra, before any trial starts or any record is written."""
    values = values_file(tmp_path, SEARCH, {**TRIAL, "framework": "keras"})
    out = tmp_path / "out"
    # An interpreter without TensorFlow: sys.modules[name] = None is how Python marks a module
    # that cannot be imported (find_spec answers None, import raises).
    hide = "import sys; sys.modules['tensorflow'] = None; from generator.__main__ import entry; sys.exit(entry())"
    cmd = [sys.executable, "-c", hide, "run", "--local", str(values), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=tool_env(), cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        f"{values}: trial.framework: the keras trainer needs tensorflow, which this Python lacks: "
        "pip install -e '.[local,keras]' (or pip install 'katib-nas[local,keras]')"
    )
    assert not out.exists()


@pytest.mark.parametrize("name", ["enas", "darts", "hyperband", "pbt"])
def test_algorithms_without_a_local_equivalent_are_refused(name: str) -> None:
    with pytest.raises(LocalRunError, match=f"f.yaml: experiment.algorithm.algorithmName: {name} has no local"):
        sampler_for(Experiment(algorithm=Algorithm.model_validate({"algorithmName": name})), "f.yaml", 0)


def _trial(name: str, condition: str, lr: str, accuracy: str | None, start: str, end: str) -> dict[str, Any]:
    metrics = [{"name": "accuracy", "latest": accuracy, "max": accuracy, "min": "0.1"}] if accuracy else []
    trial: dict[str, Any] = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Trial",
        "metadata": {"name": name, "labels": {"katib.kubeflow.org/experiment": "digits"}},
        "spec": {"parameterAssignments": [{"name": "lr", "value": lr}]},
        "status": {
            "startTime": start,
            "completionTime": end,
            "conditions": [
                {"type": "Created", "status": "True"},
                {"type": condition, "status": "True", "reason": f"Trial{condition}"},
            ],
            "observation": {"metrics": metrics},
        },
    }
    return trial


def test_a_report_from_katib_trials_as_the_cluster_returns_them(tmp_path: Path) -> None:
    from kubeflow_katib_api.models.v1beta1_trial import V1beta1Trial

    from generator.report import records_from_trials, write_report

    trials = [
        _trial("digits-a", "Succeeded", "0.01", "0.97", "2026-11-23T10:00:00Z", "2026-11-23T10:05:00Z"),
        _trial("digits-b", "EarlyStopped", "0.00001", "0.31", "2026-11-23T10:00:00Z", "2026-11-23T10:01:30Z"),
        _trial("digits-c", "Failed", "0.02", None, "2026-11-23T10:05:00Z", "2026-11-23T10:06:00Z"),
        _trial("digits-d", "Succeeded", "0.02", "0.95", "2026-11-23T10:01:30Z", "2026-11-23T10:07:00Z"),
    ]
    for trial in trials:  # the shape Katib's own API models accept
        assert V1beta1Trial.from_dict(trial).to_dict()["spec"] == trial["spec"]
    records = records_from_trials(trials, "accuracy", True, epochs=20)
    assert [(r.name, r.ended, r.value, r.finished) for r in records] == [
        ("digits-a", "completed", 0.97, 300.0),
        ("digits-b", "early_stopped", 0.31, 90.0),
        ("digits-c", "failed", None, 360.0),
        ("digits-d", "completed", 0.95, 420.0),
    ]
    experiment = Experiment.model_validate(
        {
            "parameters": [
                {"name": "lr", "parameterType": "categorical", "feasibleSpace": {"list": ["0.00001", "0.01", "0.02"]}}
            ]
        }
    )
    (tmp_path / "best.json").write_text('{"trial": "digits-a", "value": 0.97}')
    page = write_report(tmp_path, experiment, tmp_path / "report", records)
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert (summary["trials"], summary["complete"], summary["stopped_early"]) == (4, 3, 1)
    assert summary["epochs_run"] is None and not (tmp_path / "report" / "curves.png").exists()
    text = page.read_text()
    assert "digits-a" in text and "carry no per-epoch curves" in text
    assert (tmp_path / "report" / "importance.png").is_file() and (tmp_path / "report" / "objective.png").is_file()


def test_bayesianoptimization_suggests_skopts_initial_points_at_random_first() -> None:
    """Katib's skopt service draws n_initial_points (default 10) at random before its Gaussian process."""

    def startup(settings: list[dict[str, str]]) -> int:
        algorithm = Algorithm.model_validate({"algorithmName": "bayesianoptimization", "algorithmSettings": settings})
        sampler: Any = sampler_for(Experiment(algorithm=algorithm), "f.yaml", 0)
        return int(sampler._n_startup_trials)

    assert startup([]) == 10
    assert startup([{"name": "n_initial_points", "value": "3"}]) == 3


# A wide MLP (about 2.2M weights, 8.8 MB) and a narrow CNN (well under 1 MB): model bytes, unlike latency the
# same on every machine, put them on either side of the budget. NSGA-II's seed 10 draws the MLP, then the CNN.
COSTLY: dict[str, Any] = {
    "name": "digits-cost",
    "parallelTrialCount": 1,
    "maxTrialCount": 2,
    "maxFailedTrialCount": 0,
    "algorithm": {"algorithmName": "random", "algorithmSettings": [{"name": "random_state", "value": "10"}]},
    "parameters": [{"name": "arch", "parameterType": "categorical", "feasibleSpace": {"list": ["mlp", "cnn"]}}],
    "earlyStopping": {"enabled": False},
}
COSTLY_TRIAL: dict[str, Any] = {"epochs": 1, "extraArgs": ["--num-layers=3", "--units=1024", "--channels=4"]}
BYTES = 4_000_000


@pytest.fixture(scope="module")
def budget_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    tmp = tmp_path_factory.mktemp("budget")
    values = values_file(tmp, COSTLY, COSTLY_TRIAL)
    data = yaml.safe_load(values.read_text())
    values.write_text(yaml.safe_dump({**data, "promotion": {"budget": {"modelBytes": BYTES}}}, sort_keys=False))
    proc = katib_nas("run", "--local", str(values), "--out", str(tmp / "out"), "--multi-objective", "nsga2")
    return proc, values, tmp / "out" / "models" / "digits-cost"


def test_a_local_run_promotes_within_the_budget_and_searches_both_objectives(
    budget_run: tuple[subprocess.CompletedProcess[str], Path, Path],
) -> None:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    proc, _, experiment = budget_run
    assert proc.returncode == 0, proc.stderr
    assert "multi-objective nsga2 search of accuracy and serving p99 latency (local only" in proc.stderr
    records = {
        m.parent.name: (json.loads(m.read_text())["accuracy"], json.loads((m.parent / "serving_cost.json").read_text()))
        for m in experiment.glob("digits-cost-*/metrics.json")
    }
    assert len(records) == 2
    fits = {name: acc for name, (acc, cost) in records.items() if cost["model_bytes"] <= BYTES}
    over = {name for name, (_, cost) in records.items() if cost["model_bytes"] > BYTES}
    assert fits and over, records  # the search drew models on both sides of the budget
    best = json.loads((experiment / "best.json").read_text())
    assert best["trial"] == max(sorted(fits), key=lambda name: fits[name]) and best["value"] == max(fits.values())
    assert best["budget"] == {"latency_p99_ms": None, "model_bytes": BYTES}
    assert {r["trial"] for r in best["ruled_out"]} == over
    assert f"within the serving budget (model <= {BYTES} bytes)" in proc.stderr
    # Optuna's study holds both objectives per trial: the trial's accuracy and its record's p99 latency.
    study = optuna.load_study(
        study_name="digits-cost",
        storage=optuna.storages.JournalStorage(JournalFileBackend(str(experiment / "study.journal"))),
    )
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    for t in study.trials:
        accuracy, cost = records[f"digits-cost-{t.number:04d}"]
        assert t.values == pytest.approx([accuracy, cost["latency_p99_ms"]], abs=1e-6)  # stdout has 6 digits


def test_the_report_draws_accuracy_against_latency_with_the_front_and_the_budget(
    budget_run: tuple[subprocess.CompletedProcess[str], Path, Path], tmp_path: Path
) -> None:
    from generator.report import pareto_front

    _, values, experiment = budget_run
    data = yaml.safe_load(values.read_text())
    latencies = sorted(
        json.loads(p.read_text())["latency_p99_ms"] for p in experiment.glob("digits-cost-*/serving_cost.json")
    )
    data["promotion"]["budget"]["latencyP99Ms"] = latencies[1]
    with_line = tmp_path / "values.yaml"
    with_line.write_text(yaml.safe_dump(data, sort_keys=False))
    report = katib_nas("report", str(with_line), "--experiment-dir", str(experiment), "-o", str(tmp_path / "r"))
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "r" / "pareto.png").stat().st_size > 5_000
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["budget"] == {"latency_p99_ms": latencies[1], "model_bytes": BYTES}
    points = [
        (
            json.loads((p.parent / "metrics.json").read_text())["accuracy"],
            json.loads(p.read_text())["latency_p99_ms"],
            p.parent.name,
        )
        for p in experiment.glob("digits-cost-*/serving_cost.json")
    ]
    assert summary["pareto_front"] == pareto_front(points, maximize=True) and summary["pareto_front"]
    page = (tmp_path / "r" / "index.html").read_text()
    assert 'src="pareto.png"' in page and "<th>p99 ms</th>" in page


@pytest.mark.parametrize(
    ("points", "front"),
    [
        ([(0.9, 1.0, "a"), (0.95, 2.0, "b"), (0.93, 3.0, "c"), (0.99, 5.0, "d")], ["a", "b", "d"]),
        ([(0.9, 1.0, "a"), (0.9, 1.0, "b")], ["a"]),  # a tie is one point of the front
        ([(0.8, 2.0, "slow"), (0.9, 1.0, "fast")], ["fast"]),  # faster and better: the other is dominated
        ([], []),
    ],
)
def test_the_pareto_front_keeps_the_points_nothing_beats_on_both(
    points: list[tuple[float, float, str]], front: list[str]
) -> None:
    from generator.report import pareto_front

    assert pareto_front(points, maximize=True) == front
    flipped = [(-v, lat, n) for v, lat, n in points]
    assert pareto_front(flipped, maximize=False) == front


def test_every_local_record_carries_its_provenance(
    local_run: tuple[subprocess.CompletedProcess[str], Path, Path],
) -> None:
    """A local trial records this machine's packages (no image) and the chart version and values digest
    the chart's trial template gives a trial pod."""
    _, values, experiment = local_run
    (rendered,) = by_kind(helm_template(values), "Experiment")
    container = rendered["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    docs = [json.loads(p.read_text()) for p in sorted(experiment.glob("digits-local-*/provenance.json"))]
    assert len(docs) == 4
    for doc in docs:
        assert doc["chart"] == {"version": env["KATIB_NAS_CHART"], "values_sha256": env["KATIB_NAS_VALUES_SHA256"]}
        assert doc["image"] is None and doc["framework"] == "pytorch" and doc["versions"]["torch"]
        assert doc["dataset"]["source"] == "digits" and len(doc["dataset"]["sha256"]) == 64


@pytest.mark.parametrize("multi_objective", [None, "nsga2"])
def test_a_random_state_that_is_no_number_is_one_line(multi_objective: str | None) -> None:
    # goptuna's sobol ignores random_state, so validate only warns about it; the local sampler's seed is refused.
    from generator.local.samplers import multi_objective_sampler

    algorithm = {"algorithmName": "sobol", "algorithmSettings": [{"name": "random_state", "value": "abc"}]}
    experiment = Experiment.model_validate({"algorithm": algorithm})
    with pytest.raises(LocalRunError, match="^exp: experiment.algorithm.algorithmSettings: random_state 'abc' is not"):
        if multi_objective:
            multi_objective_sampler(multi_objective, experiment, "exp", 0)
        else:
            sampler_for(experiment, "exp", 0)


@pytest.mark.parametrize(("setting", "seed"), [("4294967296", 0), ("-1", 2**32 - 1), ("7", 7)])
def test_a_seed_the_service_takes_seeds_the_local_sampler(setting: str, seed: int) -> None:
    # hyperopt takes any seed from 0, goptuna any int64; Optuna's samplers only 0 to 2**32 - 1.
    from generator.local.samplers import random_state

    assert random_state({"random_state": setting}, 0, "f.yaml") == seed
    for algorithm in ("random", "cmaes"):
        settings = [{"name": "random_state", "value": setting}]
        algorithm_values = {"algorithmName": algorithm, "algorithmSettings": settings}
        experiment = Experiment.model_validate({"algorithm": algorithm_values})
        sampler_for(experiment, "f.yaml", 0)


def _goptuna_cmaes(sigma: str) -> Experiment:
    settings = [{"name": "sigma", "value": sigma}]
    return Experiment.model_validate({"algorithm": {"algorithmName": "cmaes", "algorithmSettings": settings}})


def test_goptunas_sigma_is_read_as_go_reads_it() -> None:
    from optuna.samplers import CmaEsSampler

    sampler = sampler_for(_goptuna_cmaes("0x1p-2"), "f.yaml", 0)
    assert isinstance(sampler, CmaEsSampler) and sampler._sigma0 == 0.25


def test_a_sigma_the_local_cmaes_cannot_start_from_is_one_line() -> None:
    with pytest.raises(LocalRunError) as refused:
        sampler_for(_goptuna_cmaes("NaN"), "f.yaml", 0)
    assert refused.value.message == (
        "f.yaml: experiment.algorithm.algorithmSettings: sigma 'NaN' is no number the local CMA-ES can start from; "
        "give a positive one"
    )


def test_a_grid_too_large_to_list_is_refused_before_it_is_listed() -> None:
    """A grid over 0..1e9 was listed value by value (minutes and gigabytes): it is counted first."""
    code = (
        "from generator.local.samplers import sampler_for; from generator.models import Experiment\n"
        "e = Experiment.model_validate({'algorithm': {'algorithmName': 'grid'}, 'parameters': [{'name': 'x', "
        "'parameterType': 'int', 'feasibleSpace': {'min': '0', 'max': '1000000000'}}]})\n"
        "sampler_for(e, 'f.yaml', 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "generator.errors.LocalRunError: f.yaml: experiment.parameters: the grid has 1000000001 points and the local "
        "runner lists each one, at most 100000; narrow the ranges or widen the steps"
    )


def test_a_refused_sampler_names_the_values_file_and_writes_nothing(tmp_path: Path) -> None:
    # goptuna's cmaes takes a NaN sigma; Optuna's CMA-ES fails on it.
    algorithm = {"algorithmName": "cmaes", "algorithmSettings": [{"name": "sigma", "value": "nan"}]}
    doubles = [
        {"name": name, "parameterType": "double", "feasibleSpace": {"min": "0.001", "max": "0.1"}}
        for name in ("lr", "dropout")
    ]
    values = values_file(tmp_path, {**SEARCH, "algorithm": algorithm, "parameters": doubles}, TRIAL)
    out = tmp_path / "out"
    proc = katib_nas("run", "--local", str(values), "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"{values}: experiment.algorithm.algorithmSettings: sigma 'nan' is no number the local CMA-ES can start "
        "from; give a positive one"
    )
    assert not out.exists()


def test_an_out_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    values = values_file(tmp_path, SEARCH, TRIAL)
    out = tmp_path / "a-file"
    out.write_text("")
    proc = katib_nas("run", "--local", str(values), "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (
        f"--out: cannot create {out / 'models' / 'digits-local' / '.logs'} ({out}: not a directory); give --out a "
        "directory you can write\n"
    )
