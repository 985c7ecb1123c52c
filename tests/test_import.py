"""`katib-nas import` on Katib Experiment shapes: the values file renders back, through real helm,
to an Experiment Katib treats the same way."""

from __future__ import annotations

import copy
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from generator.cli import main
from generator.importer import import_experiment
from generator.validate import validate_file
from katib_nas_contract.provenance import ENVIRONMENT

from .conftest import ROOT, by_kind, helm_template

EXAMPLES = ROOT / "tests" / "data" / "katib"
SHAPES = ["hpo-random", "medianstop-tpe", "enas", "darts", "file-collector-pvc", "keras-continuous-nas"]
# Katib's defaulting webhook (and the Job defaults it uses for batch/v1 trials).
KATIB_SUCCESS = 'status.conditions.#(type=="Complete")#|#(status=="True")#'
KATIB_FAILURE = 'status.conditions.#(type=="Failed")#|#(status=="True")#'


def _normal_space(parameters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for p in parameters:
        fs = {k: ([str(x) for x in v] if k == "list" else str(v)) for k, v in p["feasibleSpace"].items()}
        out.append({**p, "feasibleSpace": fs})
    return out


def katib_objective(objective: dict[str, Any]) -> dict[str, Any]:
    """The objective after Katib's defaulting webhook (setDefaultObjective): every metric without a
    strategy gets the objective type's direction."""
    out = {"additionalMetricNames": [], **objective}
    strategies = list(out.get("metricStrategies") or [])
    given = {s["name"] for s in strategies}
    value = {"minimize": "min", "maximize": "max"}[out["type"]]
    for name in [out["objectiveMetricName"], *out["additionalMetricNames"]]:
        if name not in given:
            strategies.append({"name": name, "value": value})
            given.add(name)
    return {**out, "metricStrategies": strategies}


def katib_view(exp: dict[str, Any]) -> dict[str, Any]:
    """What Katib acts on, with Katib's defaults filled in: equal views mean equivalent Experiments."""
    spec = exp["spec"]
    template = spec["trialTemplate"]
    pod = template["trialSpec"]["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == template["primaryContainerName"]]
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod.get("volumes", [])
        if "persistentVolumeClaim" in v
    }
    collector = spec.get("metricsCollectorSpec") or {}
    return {
        "name": exp["metadata"]["name"],
        "objective": katib_objective(spec["objective"]),
        "algorithm": {"algorithmSettings": [], **spec["algorithm"]},
        "earlyStopping": spec.get("earlyStopping") and {"algorithmSettings": [], **spec["earlyStopping"]},
        "parallelTrialCount": spec.get("parallelTrialCount", 3),
        "maxTrialCount": spec["maxTrialCount"],
        "maxFailedTrialCount": spec.get("maxFailedTrialCount", spec["maxTrialCount"]),
        "resumePolicy": spec.get("resumePolicy", "Never"),
        "collector": (collector.get("collector") or {"kind": "StdOut"}, collector.get("source")),
        "parameters": _normal_space(spec.get("parameters") or []),
        "nasConfig": spec.get("nasConfig"),
        "trialParameters": template["trialParameters"],
        "conditions": (
            template.get("successCondition", KATIB_SUCCESS),
            template.get("failureCondition", KATIB_FAILURE),
        ),
        # The chart keeps trial Jobs whenever trials can be early-stopped: Katib deletes a finished
        # trial's Job at once otherwise, and the collector with it, before it reports.
        "retain": template.get("retain", False) or bool(spec.get("earlyStopping")),
        "image": container["image"],
        "pullPolicy": container.get("imagePullPolicy", "IfNotPresent"),
        # The words the trainer gets: Katib's collectors run the command as one `sh -c` string, and
        # the chart quotes each argument for that shell.
        "argv": shlex.split(" ".join(container["command"] + container.get("args", []))),
        "resources": container.get("resources"),
        # HOME and the provenance the chart adds for its own trainer (katib_nas_contract.provenance)
        "env": [e for e in container.get("env", []) if e["name"] != "HOME" and e["name"] not in ENVIRONMENT],
        "pvcMounts": sorted(
            (claims[m["name"]], m["mountPath"]) for m in container.get("volumeMounts", []) if m["name"] in claims
        ),
        "backoffLimit": template["trialSpec"]["spec"].get("backoffLimit"),
        "scheduling": {k: pod.get(k) for k in ("nodeSelector", "tolerations", "affinity", "runtimeClassName")},
    }


@pytest.mark.parametrize("shape", SHAPES)
def test_import_renders_back_to_an_equivalent_experiment(
    shape: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = EXAMPLES / f"{shape}.yaml"
    out = tmp_path / "values.yaml"
    assert main(["import", str(source), "-o", str(out)]) == 0
    assert f"wrote the values to {out}" in capsys.readouterr().err

    # The Experiment itself passes every search check; only what the profile adds may be missing
    # (requests and limits the original never set).
    report = validate_file(out)
    assert [p.path for p in report.errors] in ([], ["trial.resources"]), [str(p) for p in report.errors]
    if shape == "medianstop-tpe":
        assert report.problems == []

    original = yaml.safe_load(source.read_text())
    (rendered,) = by_kind(helm_template(out, release="imported"), "Experiment")
    expected, actual = katib_view(original), katib_view(rendered)
    if expected["backoffLimit"] is None:  # left to Kubernetes' default; the chart sets one
        actual["backoffLimit"] = None
    # The chart adds its model volume; every volume the original mounted is still there.
    assert set(expected.pop("pvcMounts")) <= set(actual.pop("pvcMounts"))
    assert actual == expected


def test_import_keeps_the_pvc_as_an_existing_claim(tmp_path: Path) -> None:
    out = tmp_path / "values.yaml"
    assert main(["import", str(EXAMPLES / "file-collector-pvc.yaml"), "-o", str(out)]) == 0
    values = yaml.safe_load(out.read_text())
    assert values["persistence"] == {"existingClaim": "katib-model-pvc", "mountPath": "/mnt/models"}
    docs = helm_template(out, release="imported")
    assert not by_kind(docs, "PersistentVolumeClaim")
    assert not by_kind(docs, "Deployment") and not by_kind(docs, "Job")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            (EXAMPLES / "tfjob.yaml").read_text(),
            "spec.trialTemplate.trialSpec: only batch/v1 Job trials can be imported, not kubeflow.org/v1/TFJob; "
            "convert the trial to a Job first",
        ),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "expected one kind: Experiment document, found 0"),
        (
            (EXAMPLES / "hpo-random.yaml").read_text().replace("  maxTrialCount: 12\n", ""),
            "spec.maxTrialCount: is missing; an unset maxTrialCount makes an endless search; set it",
        ),
        (
            (EXAMPLES / "hpo-random.yaml").read_text().replace("                command:\n", "                args:\n"),
            "spec.trialTemplate.trialSpec: container 'training-container' has no command; Katib's StdOut collector "
            "replaces the entrypoint with `sh -c`, so set command explicitly",
        ),
        (
            (EXAMPLES / "hpo-random.yaml").read_text().replace("  name: random-hpo\n", "  name: 2021-02-30\n"),
            "metadata.name: '2021-02-30' is not allowed here; use lowercase letters, digits and '-', starting with a "
            "letter and ending with a letter or digit",
        ),
        (
            (EXAMPLES / "hpo-random.yaml")
            .read_text()
            .replace("  maxTrialCount: 12\n", f"  maxTrialCount: {'1' * 5000}\n"),
            "line 16: a number of 5000 characters is too long to read; shorten it, or quote it if it is text",
        ),
    ],
    ids=["tfjob", "not-an-experiment", "no-max-trials", "no-command", "impossible-date-name", "int-of-5000-digits"],
)
def test_import_refuses_what_it_cannot_carry_over(
    text: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "experiment.yaml"
    source.write_text(text)
    out = tmp_path / "values.yaml"
    assert main(["import", str(source), "-o", str(out)]) == 2
    assert capsys.readouterr().err == f"{source}: {message}\n"
    assert not out.exists()


HPO = yaml.safe_load((EXAMPLES / "hpo-random.yaml").read_text())


def test_an_unquoted_date_is_imported_as_the_text_helm_sees(tmp_path: Path) -> None:
    text = (EXAMPLES / "hpo-random.yaml").read_text()
    dated = text.replace(
        "                command:\n",
        "                env:\n                  - {name: SINCE, value: 2021-01-01}\n                command:\n",
        1,
    )
    assert dated != text
    source = tmp_path / "experiment.yaml"
    source.write_text(dated)
    assert import_experiment(source)["trial"]["env"] == [{"name": "SINCE", "value": "2021-01-01"}]


def _without(path: str) -> dict[str, Any]:
    """hpo-random.yaml with the node at the dotted path removed."""
    doc: dict[str, Any] = copy.deepcopy(HPO)
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[key]
    del node[last]
    return doc


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            _without("spec.objective"),
            "spec.objective: is missing; Katib's webhook requires it, add type and objectiveMetricName",
        ),
        (
            _without("spec.objective.type"),
            "spec.objective.type: is missing; Katib's webhook requires it, set minimize or maximize",
        ),
        (
            _without("spec.objective.objectiveMetricName"),
            "spec.objective.objectiveMetricName: is missing; Katib's "
            "webhook requires it, name the metric the search optimises",
        ),
        (_without("spec.algorithm"), "spec.algorithm: is missing; Katib's webhook requires it, add algorithmName"),
        (
            _without("spec.algorithm.algorithmName"),
            "spec.algorithm.algorithmName: is missing; Katib's webhook requires it, name the algorithm",
        ),
        (
            {**HPO, "spec": {**HPO["spec"], "nasConfig": {"graphConfig": {"numLayers": 1}}}},
            "spec.nasConfig: is set together with spec.parameters; Katib accepts only one, remove one",
        ),
        (
            {**HPO, "spec": {**HPO["spec"], "metricsCollectorSpec": {"collector": {}}}},
            "spec.metricsCollectorSpec.collector.kind: is missing; name the collector, such as StdOut or File",
        ),
        (
            {**HPO, "spec": {**HPO["spec"], "metricsCollectorSpec": {"collector": {"kind": "TfEvent"}}}},
            "spec.metricsCollectorSpec.collector.kind: Input should be 'StdOut', 'File', 'TensorFlowEvent', "
            "'PrometheusMetric', 'Custom' or 'Push'",
        ),
        (
            _without("spec.trialTemplate"),
            "spec.trialTemplate: is missing; Katib's webhook requires it, add the "
            "trial Job under spec.trialTemplate.trialSpec",
        ),
        (
            _without("spec.trialTemplate.trialSpec"),
            "spec.trialTemplate.trialSpec: is missing; inline the trial's batch/v1 Job under it",
        ),
        (
            _without("spec.trialTemplate.trialSpec.kind"),
            "spec.trialTemplate.trialSpec: has no apiVersion or kind, "
            "which Katib's webhook requires; set apiVersion: batch/v1 and kind: Job",
        ),
        (
            _without("spec.trialTemplate.trialParameters"),
            "spec.trialTemplate.trialParameters: is empty; list the "
            "trial parameters the container uses (`${trialParameters.<name>}`)",
        ),
        (
            {**HPO, "spec": {**HPO["spec"], "parallelTrialCount": "3"}},
            "spec.parallelTrialCount: must be an integer, not a string; fix its type",
        ),
        (
            {**HPO, "metadata": {"name": "Random_HPO"}},
            "metadata.name: 'Random_HPO' is not allowed here; use lowercase letters, digits and '-', starting with "
            "a letter and ending with a letter or digit",
        ),
    ],
    ids=[
        "no-objective",
        "no-objective-type",
        "no-metric",
        "no-algorithm",
        "no-algorithm-name",
        "parameters-and-nas",
        "collector-without-kind",
        "collector-kind-misspelled",
        "no-trial-template",
        "no-trial-spec",
        "trial-spec-without-kind",
        "no-trial-parameters",
        "count-as-string",
        "name-with-capitals",
    ],
)
def test_import_never_invents_what_the_experiment_leaves_out(
    doc: dict[str, Any], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What Katib's webhook requires is refused when missing, never filled with a chart default."""
    source = tmp_path / "experiment.yaml"
    source.write_text(yaml.safe_dump(doc))
    out = tmp_path / "values.yaml"
    assert main(["import", str(source), "-o", str(out)]) == 2
    assert capsys.readouterr().err == f"{source}: {message}\n"
    assert not out.exists()


def test_import_keeps_a_minimize_objective_and_katibs_names(tmp_path: Path) -> None:
    """A minimize-loss search stays one, and Katib's collector names come through as written."""
    doc = copy.deepcopy(HPO)
    doc["spec"]["objective"] = {"type": "minimize", "objectiveMetricName": "loss"}
    doc["spec"]["metricsCollectorSpec"] = {
        "collector": {"kind": "TensorFlowEvent"},
        "source": {"fileSystemPath": {"path": "/tmp/tfevents", "kind": "Directory"}},
    }
    source = tmp_path / "experiment.yaml"
    source.write_text(yaml.safe_dump(doc))
    out = tmp_path / "values.yaml"
    assert main(["import", str(source), "-o", str(out)]) == 0
    (rendered,) = by_kind(helm_template(out, release="imported"), "Experiment")
    assert rendered["spec"]["objective"].items() >= {"type": "minimize", "objectiveMetricName": "loss"}.items()
    assert rendered["spec"]["metricsCollectorSpec"]["collector"] == {"kind": "TensorFlowEvent"}


def test_a_trial_parameter_used_only_in_env_counts_as_used(tmp_path: Path) -> None:
    """Katib's webhook searches the whole trial template for `${trialParameters.X}`, env included."""
    doc = copy.deepcopy(HPO)
    container = doc["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    container["command"] = [c for c in container["command"] if "momentum" not in c]
    container["env"] = [{"name": "MOMENTUM", "value": "${trialParameters.momentum}"}]
    source = tmp_path / "experiment.yaml"
    source.write_text(yaml.safe_dump(doc))
    out = tmp_path / "values.yaml"
    assert main(["import", str(source), "-o", str(out)]) == 0
    assert [p.path for p in validate_file(out).errors] == ["trial.resources"]
    (rendered,) = by_kind(helm_template(out, release="imported"), "Experiment")
    assert katib_view(rendered)["env"] == container["env"]
