"""Real helm renders of every shipped values file, checked by real schemas: kubeconform against the
Kubernetes schemas of the chart's oldest and newest supported versions, Katib's own API models for
the Experiment, and the API server's Pod Security admission library for the restricted standard."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubeflow_katib_api.models.v1beta1_experiment import V1beta1Experiment

from generator.validate import chart_defaults

from .conftest import CHART, CI_VALUES, KATIB_API, PROFILE_VALUES, ROOT, by_kind, helm_template, run, tool

ALL_VALUES = PROFILE_VALUES + CI_VALUES
# Chart.yaml kubeVersion is >=1.29; the newest schemas kubernetes-validate ships are 1.37.
KUBE_VERSIONS = ("1.29.0", "1.37.0")
SCHEMAS = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
Kubeconform = Callable[[list[dict[str, Any]], str], subprocess.CompletedProcess[str]]
NOT_IN_KUBERNETES = {"Experiment", "InferenceService", "ServiceMonitor"}


def _render(path: Path) -> list[dict[str, Any]]:
    return helm_template(path)


@pytest.fixture(scope="module")
def renders() -> dict[str, list[dict[str, Any]]]:
    return {p.name: _render(p) for p in ALL_VALUES}


@pytest.mark.parametrize("path", ALL_VALUES, ids=lambda p: p.name)
def test_helm_lint(path: Path) -> None:
    proc = run([tool("helm"), "lint", str(CHART), "--strict", "--kube-version", "1.31.0", "--values", str(path)])
    assert "0 chart(s) failed" in proc.stdout


@pytest.fixture(scope="session")
def schema_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kubernetes-validate ships the Kubernetes OpenAPI schemas with refs into a shared
    `/api/_definitions.json`; kubeconform wants one self-contained file per kind. Embed the
    definitions into each file, in kubeconform's `<version>-standalone-strict` layout."""
    out = tmp_path_factory.mktemp("kubernetes-json-schema")
    for version in KUBE_VERSIONS:
        source = SCHEMAS / f"v{version}-local-strict"
        target = out / f"v{version}-standalone-strict"
        target.mkdir()
        definitions = json.loads((source / "_definitions.json").read_text())["$defs"]
        for path in source.glob("*.json"):
            if path.name.startswith("_"):
                continue
            text = path.read_text().replace('"/api/_definitions.json#/$defs/', '"#/$defs/')
            schema = json.loads(text)
            schema["$defs"] = definitions
            (target / path.name).write_text(json.dumps(schema).replace('"/api/_definitions.json#/$defs/', '"#/$defs/'))
    return out


@pytest.fixture(scope="session")
def kubeconform(schema_dir: Path) -> Kubeconform:
    def check(docs: list[dict[str, Any]], version: str) -> subprocess.CompletedProcess[str]:
        return _kubeconform(docs, version, schema_dir)

    return check


def _kubeconform(docs: list[dict[str, Any]], version: str, schema_dir: Path) -> subprocess.CompletedProcess[str]:
    location = (
        str(schema_dir) + "/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/"
        "{{ .ResourceKind }}{{ .KindSuffix }}.json"
    )
    return run(
        [
            tool("kubeconform"),
            "-strict",
            "-summary",
            "-output",
            "text",
            "-kubernetes-version",
            version,
            "-schema-location",
            location,
            "-skip",
            ",".join(sorted(NOT_IN_KUBERNETES)),
            "-",
        ],
        stdin=yaml.safe_dump_all(docs),
        check=False,
    )


def _trial_jobs(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Job inside each Experiment's trial template, as Katib will create it."""
    jobs = []
    for exp in by_kind(docs, "Experiment"):
        job = copy.deepcopy(exp["spec"]["trialTemplate"]["trialSpec"])
        job.setdefault("metadata", {})["name"] = "trial"
        jobs.append(job)
    return jobs


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("path", ALL_VALUES, ids=lambda p: p.name)
def test_objects_match_the_kubernetes_schema(
    renders: dict[str, list[dict[str, Any]]], path: Path, version: str, kubeconform: Kubeconform
) -> None:
    docs = renders[path.name]
    objects = [d for d in docs if d["kind"] not in NOT_IN_KUBERNETES] + _trial_jobs(docs)
    proc = kubeconform(objects, version)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Valid: {len(objects)}, Invalid: 0, Errors: 0" in proc.stdout


def test_kubeconform_rejects_a_misspelt_field(kubeconform: Kubeconform) -> None:
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": 80}], "selectr": {"a": "b"}},
    }
    proc = kubeconform([bad], KUBE_VERSIONS[0])
    assert proc.returncode == 1 and "selectr" in proc.stdout


@pytest.mark.parametrize("path", ALL_VALUES, ids=lambda p: p.name)
def test_experiment_round_trips_through_katib_api_models(renders: dict[str, list[dict[str, Any]]], path: Path) -> None:
    (experiment,) = by_kind(renders[path.name], "Experiment")
    model = V1beta1Experiment.from_dict(experiment)
    assert model is not None and model.spec is not None
    # No field the chart writes is unknown to Katib's API: a field lost in the round trip is a typo.
    assert json.loads(json.dumps(model.to_dict())) == experiment
    for parameter in model.spec.parameters or []:
        space = parameter.feasible_space
        assert all(isinstance(v, str) for v in (space.min, space.max, space.step) if v is not None)


STRATEGIES = [  # objective, additional metrics, what the user set -> how Katib summarises each metric
    (("accuracy", "maximize"), ["loss"], [], {"accuracy": "max", "loss": "min"}),
    (("loss", "minimize"), ["accuracy", "val-error"], [], {"loss": "min", "accuracy": "max", "val-error": "min"}),
    (
        ("accuracy", "maximize"),
        ["train_loss", "f1", "epochs"],
        [],
        {"accuracy": "max", "train_loss": "min", "f1": "max", "epochs": "max"},
    ),
    (("accuracy", "maximize"), ["loss"], [{"name": "loss", "value": "latest"}], {"accuracy": "max", "loss": "latest"}),
    (("accuracy", "minimize"), ["loss"], [], {"accuracy": "min", "loss": "min"}),
]


@pytest.mark.parametrize(("objective", "additional", "given", "expected"), STRATEGIES)
def test_each_metric_is_summarised_in_its_own_direction(
    objective: tuple[str, str], additional: list[str], given: list[dict[str, str]], expected: dict[str, str]
) -> None:
    """Katib's defaulting gives every metric left out the objective's direction, so `loss` would be
    kept at its maximum under a maximize objective; the chart names each metric's own direction."""
    name, kind = objective
    values = {"objectiveMetricName": name, "type": kind, "additionalMetricNames": additional, "metricStrategies": given}
    (experiment,) = by_kind(helm_template(values={"experiment": {"objective": values}}), "Experiment")
    model = V1beta1Experiment.from_dict(experiment)
    assert model is not None and model.spec is not None and model.spec.objective is not None
    strategies = model.spec.objective.metric_strategies or []
    assert {s.name: s.value for s in strategies} == expected
    assert len(strategies) == len(expected)


@pytest.mark.parametrize("path", ALL_VALUES, ids=lambda p: p.name)
def test_every_pod_meets_the_restricted_pod_security_standard(
    renders: dict[str, list[dict[str, Any]]], path: Path
) -> None:
    proc = run([tool("psacheck")], stdin=yaml.safe_dump_all(renders[path.name]), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ", 0 violations" in proc.stdout


def test_psacheck_catches_a_root_pod() -> None:
    docs = helm_template(values={"podSecurityContext": {"runAsUser": 0}})
    proc = run([tool("psacheck")], stdin=yaml.safe_dump_all(docs), check=False)
    assert proc.returncode == 1 and "runAsUser=0" in proc.stdout


def _pod_templates(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for d in docs:
        if d["kind"] in ("Job", "Deployment"):
            out.append((d["metadata"]["labels"]["app.kubernetes.io/component"], d["spec"]["template"]["metadata"]))
        elif d["kind"] == "Experiment":
            out.append(("trial", d["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["metadata"]))
    return out


@pytest.mark.parametrize("path", ALL_VALUES, ids=lambda p: p.name)
def test_selectors_and_pods_carry_their_component(renders: dict[str, list[dict[str, Any]]], path: Path) -> None:
    docs = renders[path.name]
    for component, meta in _pod_templates(docs):
        assert meta["labels"]["app.kubernetes.io/component"] == component
        assert "helm.sh/chart" not in meta["labels"]
    for svc in by_kind(docs, "Service"):
        assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "server"
    for deploy in by_kind(docs, "Deployment"):
        component = deploy["metadata"]["labels"]["app.kubernetes.io/component"]
        assert deploy["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == component


@pytest.mark.parametrize("sidecar", [False, True])
@pytest.mark.parametrize("mode", ["fastapi", "kserve"])
def test_every_pod_carries_the_istio_sidecar_setting(mode: str, sidecar: bool) -> None:
    """Trials, extraction, batch and server pods alike: in a namespace with Istio injection (Kubeflow's)
    a sidecar keeps trial and batch Jobs from ever completing."""
    values = {"server": {"mode": mode}, "istio": {"sidecarInject": sidecar}}
    docs = helm_template(values=values)
    pods = [meta.get("annotations", {}) for _, meta in _pod_templates(docs)]
    pods += [isvc["spec"]["predictor"].get("annotations", {}) for isvc in by_kind(docs, "InferenceService")]
    assert len(pods) == 4  # trial, extract, batch, server
    assert [a.get("sidecar.istio.io/inject") for a in pods] == [str(sidecar).lower()] * 4


def test_component_names_fit_63_characters() -> None:
    docs = helm_template(values={"fullnameOverride": "x" * 63, "experiment": {"name": "short"}})
    names = [d["metadata"]["name"] for d in docs]
    assert all(len(n) <= 63 for n in names), names
    assert any(n.endswith("-extract") for n in names) and any(n.endswith("-models") for n in names)


@pytest.mark.parametrize("path", PROFILE_VALUES, ids=lambda p: p.stem)
def test_profile_render_matches_golden(path: Path, request: pytest.FixtureRequest) -> None:
    golden = ROOT / "tests" / "data" / "expected" / f"{path.stem}.yaml"
    text = yaml.safe_dump_all(helm_template(path), sort_keys=False)
    if request.config.getoption("--update-golden"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert golden.is_file(), f"{golden} missing: run pytest --update-golden"
    assert text == golden.read_text(), f"render of {path} changed; review and run pytest --update-golden"


# --- no dead values -------------------------------------------------------------------------------

# Values that change nothing in `helm template` output, and where their use is tested instead.
READ_ELSEWHERE = {
    "profile": "NOTES.txt only (charts/katib-nas/tests/notes_test.yaml)",
    "capabilities.assumeCRDs": "the CRD guard (experiment_test.yaml, server_test.yaml)",
}
# Values whose generic mutation would be invalid, with a valid change instead.
MUTATIONS: dict[str, Any] = {
    "experiment.name": "renamed",
    "experiment.objective.type": "minimize",
    "experiment.objective.goal": 0.9,
    "experiment.objective.objectiveMetricName": "loss",
    "experiment.objective.additionalMetricNames": ["train_loss"],
    "experiment.objective.metricStrategies": [{"name": "accuracy", "value": "latest"}],
    "experiment.algorithm.algorithmName": "tpe",
    "experiment.algorithm.algorithmSettings": [{"name": "random_state", "value": "1"}],
    "experiment.earlyStopping.algorithmName": "medianstop",
    "experiment.resumePolicy": "LongRunning",
    "experiment.metricsCollector.kind": "TensorFlowEvent",
    "experiment.metricsCollector.source": {"fileSystemPath": {"path": "/tmp/tf", "kind": "Directory"}},
    "experiment.metricsCollector.customCollector": {"image": "collector:1"},
    "experiment.nasConfig": {"graphConfig": {"numLayers": 2}},
    "trial.image.digest": "sha256:" + "1" * 64,
    "trial.image.pullPolicy": "Always",
    "trial.framework": "keras",
    "trial.command": ["python", "-m", "my_trainer"],
    "trial.args": ["--x=${trialParameters.a}"],
    "trial.trialParameters": [{"name": "a", "reference": "lr"}],
    "trial.env": [{"name": "A", "value": "1"}],
    "trial.extraArgs": ["--patience=3"],
    "trial.gpuMemoryMiB": 2048,
    "trial.tolerations": [{"key": "k", "operator": "Exists"}],
    "persistence.size": "3Gi",
    "persistence.accessModes": ["ReadWriteMany"],
    "persistence.storageClassName": "fast",
    "persistence.mountPath": "/data",
    "promotion.budget.latencyP99Ms": 0.5,
    "promotion.budget.modelBytes": 100_000,
    "extract.tolerations": [{"key": "k", "operator": "Exists"}],
    "batchInference.restartPolicy": "OnFailure",
    "batchInference.ttlSecondsAfterFinished": 60,
    "batchInference.tolerations": [{"key": "k", "operator": "Exists"}],
    "server.mode": "kserve",
    "server.image.digest": "sha256:" + "2" * 64,
    "server.image.pullPolicy": "Always",
    "server.modelName": "mnist",
    "server.service.type": "NodePort",
    "server.tolerations": [{"key": "k", "operator": "Exists"}],
    "server.serviceMonitor.interval": "10s",
    "server.kserve.progressDeadline": "1h",
    "server.env": [{"name": "MAX_CONNECTIONS", "value": "64"}],
    "server.tmpSizeLimit": "32Mi",
    "prometheusRule.server.window": "2m",
    "prometheusRule.server.errorRatio": 0.1,
    "prometheusRule.server.latencyP99Seconds": 0.5,
    "prometheusRule.server.sustainedFor": "15m",
    "prometheusRule.server.staleModelAfter": "5m",
    "prometheusRule.search.noTrialFinishedFor": "2h",
    "prometheusRule.search.failedTrialsWindow": "6h",
}
# Values that only act together with another one.
CONTEXT: dict[str, dict[str, Any]] = {
    "experiment.metricsCollector.source": {"experiment": {"metricsCollector": {"kind": "TensorFlowEvent"}}},
    "experiment.metricsCollector.customCollector": {"experiment": {"metricsCollector": {"kind": "Custom"}}},
    "experiment.nasConfig": {"experiment": {"parameters": [], "nasConfig": {"graphConfig": {"numLayers": 1}}}},
    "trial.args": {"trial": {"trialParameters": [{"name": "a", "reference": "lr"}]}},
    "trial.trialParameters": {"trial": {"args": ["--x=${trialParameters.a}"]}},
    "trial.retain": {"experiment": {"earlyStopping": {"enabled": False}}},  # early stopping always retains
    "server.kserve.minReplicas": {"server": {"mode": "kserve"}},
    "server.kserve.maxReplicas": {"server": {"mode": "kserve"}},
    "server.kserve.progressDeadline": {"server": {"mode": "kserve"}},
    "server.serviceMonitor.interval": {"server": {"serviceMonitor": {"enabled": True}}},
    # The rule's values act once it renders; its server alerts read the ServiceMonitor's series.
    **{
        f"prometheusRule.{key}": {"prometheusRule": {"enabled": True}, "server": {"serviceMonitor": {"enabled": True}}}
        for key in ("labels", "alertLabels.severity", "server.enabled", "search.enabled")
        + tuple(f"server.{k}" for k in ("window", "errorRatio", "latencyP99Seconds", "sustainedFor", "staleModelAfter"))
        + tuple(f"search.{k}" for k in ("namespaceLabel", "noTrialFinishedFor", "failedTrials", "failedTrialsWindow"))
    },
}


def _leaves(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict) and node:
        return [leaf for k, v in node.items() for leaf in _leaves(v, f"{prefix}{k}.")]
    return [(prefix.rstrip("."), node)]


def _mutate(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return f"{value}x" if value else "x"
    if isinstance(value, dict):
        return {"x": "y"}
    if isinstance(value, list) and value:
        return value[:-1] if len(value) > 1 else value + value
    raise AssertionError(f"no mutation for {value!r}; add one to MUTATIONS")


def _nest(path: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cursor = out
    *parents, last = path.split(".")
    for p in parents:
        cursor = cursor.setdefault(p, {})
    cursor[last] = value
    return out


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


APIS = (
    KATIB_API,
    "serving.kserve.io/v1beta1/InferenceService",
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
)


def test_every_value_changes_the_rendered_chart() -> None:
    """Every key of values.yaml is read by some template (cert-manager's no-dead-values rule)."""
    leaves = [(p, v) for p, v in _leaves(chart_defaults()) if p not in READ_ELSEWHERE]
    dead: list[str] = []
    broken: list[str] = []
    for path, value in leaves:
        context = CONTEXT.get(path, {})
        changed = _deep_merge(context, _nest(path, MUTATIONS[path] if path in MUTATIONS else _mutate(value)))
        base = helm_template(values=context, api_versions=APIS)
        try:
            after = helm_template(values=changed, api_versions=APIS)
        except AssertionError as exc:
            broken.append(f"{path}: {str(exc).splitlines()[-1]}")
            continue
        if base == after:
            dead.append(path)
    assert not broken, "mutations the chart rejects; add a valid one to MUTATIONS:\n" + "\n".join(broken)
    assert not dead, f"values no template reads: {dead}"
    assert len(leaves) > 60
