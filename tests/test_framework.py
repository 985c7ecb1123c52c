"""`trial.framework` picks the katib-nas trainer (PyTorch or Keras): the chart runs that trainer's image
and command, `validate` checks the values against that trainer's contract, `katib-nas run --local`
runs it, and an imported Experiment written for the Keras trainer renders with it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from generator.cli import main
from generator.validate import validate_file
from katib_nas_contract.best import read_pointer
from katib_nas_contract.flags import METRICS, TRAINERS
from katib_nas_contract.record import METRICS as METRICS_FILE

from .conftest import ROOT, by_kind, helm_template, tool_env

FRAMEWORKS = sorted(TRAINERS)
VALUES = {name: yaml.safe_load((ROOT / "values" / f"{name}.yaml").read_text()) for name in ("microk8s", "k3s-gpu")}
KERAS_EXPERIMENT = ROOT / "tests" / "data" / "katib" / "keras-continuous-nas.yaml"
REFERENCE = re.compile(r"\$\{trialParameters\.(.+?)\}")


def write_values(
    tmp_path: Path, trial: dict[str, Any], experiment: dict[str, Any] | None = None, base: str = "microk8s"
) -> Path:
    """A shipped values file with trial (and experiment) keys replaced."""
    data = {
        **VALUES[base],
        "experiment": {**VALUES[base]["experiment"], **(experiment or {})},
        "trial": {**VALUES[base]["trial"], **trial},
    }
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def trainer_container(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    (experiment,) = by_kind(docs, "Experiment")
    spec = experiment["spec"]
    return spec, spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("base", sorted(VALUES))
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_chart_runs_the_chosen_trainer_and_its_command_works(framework: str, base: str, tmp_path: Path) -> None:
    """Render a shipped values file with the framework, fill in each parameter as Katib would (its lowest
    value), and run the container's command line here with --dry-run: the trainer takes every flag."""
    values = write_values(tmp_path, {"framework": framework}, base=base)
    spec, container = trainer_container(helm_template(values))
    trainer = TRAINERS[framework]
    tag = "0.1.0-cuda" if base == "k3s-gpu" else "0.1.0"  # the GPU file runs the framework's CUDA build
    assert container["image"] == f"{trainer.repository}:{tag}"
    assert container["command"] == list(trainer.command)
    lowest = {p["name"]: p["feasibleSpace"].get("min") or p["feasibleSpace"]["list"][0] for p in spec["parameters"]}
    assignments = {
        tp["name"]: lowest.get(tp["reference"], "nas-katib-nas-x7k2p9qz")
        for tp in spec["trialTemplate"]["trialParameters"]
    }
    args = [REFERENCE.sub(lambda m: str(assignments[m.group(1)]), a) for a in container["args"]]
    argv = [sys.executable, *container["command"][1:], *args, f"--output-dir={tmp_path / 'models'}", "--dry-run"]
    argv.append("--dataset=digits")  # the k3s-gpu values train on MNIST, which tests never download
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    assert [pair.split("=")[0] for pair in line.split()] == list(METRICS)


@pytest.mark.parametrize(
    ("trial", "path", "fragment"),
    [
        (
            {"framework": "keras", "image": {"repository": "registry.local/katib-nas/trainer"}},
            "trial.framework",
            "registry.local/katib-nas/trainer is the katib-nas pytorch trainer, not keras; set trial.framework: "
            "pytorch, or leave trial.image.repository empty for the keras one",
        ),
        (
            {"framework": "keras", "command": ["python", "-m", "katib_nas_trainer"]},
            "trial.command",
            "the katib-nas keras trainer image runs `python -m katib_nas_keras`, not `python -m katib_nas_trainer`",
        ),
    ],
    ids=["image-of-the-other-framework", "command-of-the-other-framework"],
)
def test_validate_refuses_a_trainer_of_the_other_framework(
    trial: dict[str, Any], path: str, fragment: str, tmp_path: Path
) -> None:
    report = validate_file(write_values(tmp_path, trial))
    found = [p for p in report.errors if p.path == path]
    assert len(found) == 1 and fragment in found[0].message, [str(p) for p in report.problems]


def test_validate_checks_metrics_and_flags_against_the_keras_trainer(tmp_path: Path) -> None:
    experiment = {
        "objective": {"objectiveMetricName": "val_accuracy"},
        "parameters": [
            {"name": "learning-rate", "parameterType": "double", "feasibleSpace": {"min": 0.001, "max": 0.1}}
        ],
    }
    report = validate_file(write_values(tmp_path, {"framework": "keras"}, experiment))
    messages = {p.path: p.message for p in report.errors}
    assert messages["experiment.objective.objectiveMetricName"].startswith(
        "the katib-nas trainer never prints 'val_accuracy'"
    )
    assert messages["experiment.parameters[0].name"].startswith("the katib-nas trainer has no flag --learning-rate")
    assert validate_file(write_values(tmp_path, {"framework": "keras"})).errors == []


def test_an_imported_keras_experiment_renders_with_the_keras_trainer(tmp_path: Path) -> None:
    out = tmp_path / "values.yaml"
    assert main(["import", str(KERAS_EXPERIMENT), "-o", str(out)]) == 0
    values = yaml.safe_load(out.read_text())
    assert values["trial"]["framework"] == "keras"
    # Only what the microk8s profile adds is missing (the Experiment sets no requests and limits).
    assert [p.path for p in validate_file(out).errors] == ["trial.resources"]
    _, container = trainer_container(helm_template(out, release="imported"))
    assert container["image"] == "ghcr.io/katib-nas/trainer-keras:0.1.0"
    assert container["command"] == list(TRAINERS["keras"].command)

    # A flag the Keras trainer does not take, and a search space outside a flag's range, are caught
    # through the trialParameters that carry them.
    broken = KERAS_EXPERIMENT.read_text().replace("--lr=", "--learning-rate=").replace('"256"]', '"100000"]')
    source = tmp_path / "broken.yaml"
    source.write_text(broken)
    assert main(["import", str(source), "-o", str(tmp_path / "broken-values.yaml")]) == 0
    messages = {p.path: p.message for p in validate_file(tmp_path / "broken-values.yaml").errors}
    assert messages["trial.args[4]"].startswith("the katib-nas keras trainer has no flag --learning-rate")
    assert messages["experiment.parameters[2].feasibleSpace"] == (
        "--units=100000 is out of the trainer's range [1, 8192]"
    )


def test_a_local_run_trains_with_the_keras_trainer(tmp_path: Path) -> None:
    experiment = {
        "name": "keras-local",
        "parallelTrialCount": 1,
        "maxTrialCount": 2,
        "maxFailedTrialCount": 1,
        "algorithm": {"algorithmName": "grid", "algorithmSettings": [{"name": "random_state", "value": "1"}]},
        "resumePolicy": "LongRunning",  # Katib's grid (optuna) cannot resume FromVolume
        "parameters": [{"name": "lr", "parameterType": "categorical", "feasibleSpace": {"list": ["0.005", "0.01"]}}],
        "earlyStopping": {"enabled": False},
    }
    trial = {"framework": "keras", "epochs": 3, "extraArgs": ["--units=64", "--num-layers=1"]}
    values = write_values(tmp_path, trial, experiment)
    cmd = [sys.executable, "-m", "generator", "run", "--local", str(values), "--out", str(tmp_path / "out")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=tool_env(), cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr
    experiment_dir = tmp_path / "out" / "models" / "keras-local"
    pointer = read_pointer(experiment_dir)
    assert pointer is not None
    records = [json.loads(p.read_text()) for p in experiment_dir.glob(f"*/{METRICS_FILE}")]
    assert len(records) == 2 and {r["framework"] for r in records} == {"keras"}
    provenance = [json.loads(p.read_text()) for p in experiment_dir.glob("*/provenance.json")]
    assert len(provenance) == 2 and {p["framework"] for p in provenance} == {"keras"}
    assert all(p["versions"]["tensorflow"] and p["chart"]["version"] == "katib-nas-0.1.0" for p in provenance)
    assert max(r["accuracy"] for r in records) == pointer["value"] > 0.8
