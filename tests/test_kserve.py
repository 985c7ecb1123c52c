"""KServe mode judged by the projects that judge it in a cluster, at the versions KServe v0.16 pins:
every rendered InferenceService goes through KServe's webhooks and predictor reconciler and Knative
Serving's validation with its default feature flags (ci/kservecheck), in both of KServe's deployment
modes; the pods KServe would create meet the restricted Pod Security Standard; and every
InferenceService, ServiceMonitor and PrometheusRule matches its real CRD schema (KServe's and
prometheus-operator's)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from .conftest import CI_VALUES, KSERVE_API, PROFILE_VALUES, ROOT, by_kind, helm_template, run, tool

MODULE_FILES = ROOT / ".tools" / "kserve"  # links into the Go module cache (ci/install-tools.sh)
SERVICE_MONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"
PROMETHEUS_RULE_API = "monitoring.coreos.com/v1/PrometheusRule"
APIS = ("kubeflow.org/v1beta1/Experiment", KSERVE_API, SERVICE_MONITOR_API, PROMETHEUS_RULE_API)


def kserve_mode(path: Path) -> dict[str, Any]:
    """The values file with the server switched to KServe (what a k3s-gpu user does to try it)."""
    data = yaml.safe_load(path.read_text()) or {}
    data.setdefault("server", {})["mode"] = "kserve"
    data["profile"] = ""  # the microk8s profile warns about kserve in NOTES; the objects are the same
    return data


def _renders() -> dict[str, list[dict[str, Any]]]:
    out = {p.name: helm_template(p, api_versions=APIS) for p in PROFILE_VALUES + CI_VALUES}
    for p in PROFILE_VALUES:
        out[f"{p.stem}+kserve"] = helm_template(values=kserve_mode(p), api_versions=APIS)
    return out


@pytest.fixture(scope="module")
def renders() -> dict[str, list[dict[str, Any]]]:
    return _renders()


def kservecheck(docs: list[dict[str, Any]], pods: Path) -> tuple[int, list[str]]:
    config = MODULE_FILES / "inferenceservice-config.yaml"
    proc = run([tool("kservecheck"), "-config", str(config), "-pods", str(pods)], yaml.safe_dump_all(docs), check=False)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, proc.stdout.splitlines()


def test_every_inference_service_is_admitted_by_kserve_and_knative_in_both_modes(
    renders: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    services = [(name, d) for name, docs in renders.items() for d in by_kind(docs, "InferenceService")]
    assert {name for name, _ in services} >= {"enable-kserve-values.yaml", "microk8s+kserve", "k3s-gpu+kserve"}
    for name, isvc in services:
        pods = tmp_path / f"{name}-pods.yaml"
        code, lines = kservecheck([isvc], pods)
        where = f"{isvc['metadata']['namespace']}/{isvc['metadata']['name']}"
        assert (code, lines) == (0, [f"ok {where} (Serverless)", f"ok {where} (RawDeployment)"]), (name, lines)

        made = [p for p in yaml.safe_load_all(pods.read_text()) if p]
        assert len(made) == 2, name  # the Knative revision's pod and the raw Deployment's pod
        psa = run([tool("psacheck")], stdin=pods.read_text(), check=False)
        assert psa.returncode == 0, (name, psa.stdout)
        claim = next(d for d in renders[name] if d["kind"] == "PersistentVolumeClaim")["metadata"]["name"]
        experiment = by_kind(renders[name], "Experiment")[0]["metadata"]["name"]
        for pod in made:
            # KServe's pod webhook mounts the experiment's directory of the model PVC, read-only, where
            # the server reads best.json; nothing else of the PVC is visible to the server.
            (server,) = [c for c in pod["spec"]["containers"] if c["name"] == "kserve-container"]
            (mount,) = [m for m in server["volumeMounts"] if m["mountPath"] == "/mnt/models"]
            assert mount.get("readOnly") is True and mount.get("subPath") == experiment, (name, mount)
            (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
            assert volume["persistentVolumeClaim"]["claimName"] == claim
            assert {"name": "MODEL_DIR", "value": "/mnt/models"} in server["env"]
            assert pod["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"


# What the chart rendered before KServe mode was fixed, one defect at a time: each is refused by the
# component the issue names, with its own message.
DEFECTS: dict[str, tuple[Any, str]] = {
    "port name http": (
        lambda p: p["containers"][0]["ports"][0].update(name="http"),
        "Port name http is not allowed",
    ),
    "init container": (
        lambda p: p.update(initContainers=[{"name": "wait", "image": "busybox", "command": ["true"]}]),
        "pod spec support for init-containers is off",
    ),
    "pod securityContext": (
        lambda p: p.update(securityContext={"runAsNonRoot": True, "fsGroup": 0}),
        "must not set the field(s): spec.template.spec.securityContext, spec.template.spec.securityContext.fsGroup",
    ),
    "PVC volume": (
        lambda p: (
            p["volumes"].append({"name": "models", "persistentVolumeClaim": {"claimName": "x"}}),
            p["containers"][0]["volumeMounts"].append({"name": "models", "mountPath": "/models"}),
        ),
        "must not set the field(s): spec.template.spec.volumes[1].persistentVolumeClaim",
    ),
}


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_knative_refuses_what_the_predictor_must_not_carry(
    renders: dict[str, list[dict[str, Any]]], defect: str, tmp_path: Path
) -> None:
    isvc = copy.deepcopy(by_kind(renders["enable-kserve-values.yaml"], "InferenceService")[0])
    change, message = DEFECTS[defect]
    change(isvc["spec"]["predictor"])
    code, lines = kservecheck([isvc], tmp_path / "pods.yaml")
    serverless = [line for line in lines if "(Serverless)" in line]
    assert code == 1 and serverless and message in serverless[0], lines
    if defect != "port name http":  # RawDeployment makes a plain Deployment, which takes all of these
        assert any(line.startswith("ok ") and "(RawDeployment)" in line for line in lines), lines


# --- the real CRD schemas ---------------------------------------------------------------------------


def crd_validator(crd: Path, version: str) -> jsonschema.Draft7Validator:
    """The CRD's openAPIV3Schema as a JSON schema, strict the way the API server's field validation is:
    a field the schema does not declare (outside x-kubernetes-preserve-unknown-fields) is an error."""
    document = yaml.safe_load(crd.read_text())
    (served,) = [v for v in document["spec"]["versions"] if v["name"] == version]

    def strict(node: Any) -> Any:
        if isinstance(node, list):
            return [strict(n) for n in node]
        if not isinstance(node, dict):
            return node
        out = {k: strict(v) for k, v in node.items()}
        if "properties" in out and "additionalProperties" not in out:
            if not out.get("x-kubernetes-preserve-unknown-fields"):
                out["additionalProperties"] = False
        if out.pop("nullable", False) and isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        return out

    schema = strict(served["schema"]["openAPIV3Schema"])
    return jsonschema.Draft7Validator(schema)


CRDS = {
    "InferenceService": ("inferenceservices-crd.yaml", "v1beta1"),
    "ServiceMonitor": ("servicemonitors-crd.yaml", "v1"),
    "PrometheusRule": ("prometheusrules-crd.yaml", "v1"),
}


@pytest.fixture(scope="module")
def validators() -> dict[str, jsonschema.Draft7Validator]:
    return {kind: crd_validator(MODULE_FILES / name, version) for kind, (name, version) in CRDS.items()}


def test_every_inference_service_service_monitor_and_prometheus_rule_matches_its_crd(
    renders: dict[str, list[dict[str, Any]]], validators: dict[str, jsonschema.Draft7Validator]
) -> None:
    checked = {kind: 0 for kind in CRDS}
    for name, docs in renders.items():
        for kind, validator in validators.items():
            for doc in by_kind(docs, kind):
                errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
                assert errors == [], (name, kind, errors)
                checked[kind] += 1
    assert checked["InferenceService"] >= 3 and checked["ServiceMonitor"] >= 1, checked
    assert checked["PrometheusRule"] >= 1, checked


def test_the_crd_schemas_catch_a_misspelt_field(
    renders: dict[str, list[dict[str, Any]]], validators: dict[str, jsonschema.Draft7Validator]
) -> None:
    isvc = copy.deepcopy(by_kind(renders["enable-kserve-values.yaml"], "InferenceService")[0])
    isvc["spec"]["predictor"]["minReplica"] = 1
    monitor = copy.deepcopy(by_kind(renders["enable-servicemonitor-values.yaml"], "ServiceMonitor")[0])
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    rule = copy.deepcopy(by_kind(renders["enable-prometheusrule-values.yaml"], "PrometheusRule")[0])
    rule["spec"]["groups"][0]["rules"][0]["for"] = "ten minutes"
    assert "'minReplica' was unexpected" in str(list(validators["InferenceService"].iter_errors(isvc)))
    assert "'intervall' was unexpected" in str(list(validators["ServiceMonitor"].iter_errors(monitor)))
    assert "'ten minutes' does not match" in str(list(validators["PrometheusRule"].iter_errors(rule)))
