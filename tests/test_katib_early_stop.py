"""Trials stopped by the katib-nas rules are EarlyStopped in Katib, as Katib's own early stopping
reports them: the trainer appends Katib's `EarlyStopped` condition to its Trial's status, with a
token of the chart's trial ServiceAccount, and Katib's controllers take it from there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubeflow_katib_api.models.v1beta1_trial import V1beta1Trial

from generator.validate import validate_file
from katib_nas_contract.katib_status import Cluster, early_stopped_condition, mark_early_stopped, should_mark

from .conftest import ROOT, train_trial
from .controlplane import ControlPlane, fake_nodes, start_control_plane, start_scheduling
from .test_install import experiment, katib_nas, namespace
from .test_schedule import _trial

NS = "ml"
VALUES = ROOT / "values" / "microk8s.yaml"  # the median rule, the chart's default


# --- the trainer side ---------------------------------------------------------------------------


def test_only_the_trainers_cross_trial_rules_mark_a_trial() -> None:
    assert should_mark({"ended": "early_stopped", "stopped_by": "median"})
    assert should_mark({"ended": "early_stopped", "stopped_by": "successive-halving"})
    assert not should_mark({"ended": "early_stopped", "stopped_by": "patience"})  # converged: a complete run
    assert not should_mark({"ended": "completed", "stopped_by": None})


def test_the_condition_is_katibs() -> None:
    """The fields Katib's early-stopping service writes, in Katib's own API model."""
    trial = V1beta1Trial.from_dict({"status": {"conditions": [early_stopped_condition("median", now=0)]}})
    assert trial is not None and trial.status is not None
    (condition,) = trial.status.conditions or []
    assert (condition.type, condition.status, condition.reason) == ("EarlyStopped", "True", "TrialEarlyStopped")
    assert condition.last_transition_time == datetime(1970, 1, 1, tzinfo=UTC)


def _trainer(root: Path, trial: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """The trial program as the chart runs it when trial pods may mark their Trial."""
    cmd = [sys.executable, "-m", "katib_nas_trainer", "--dataset=digits", f"--output-dir={root}", "--experiment=exp"]
    cmd += [f"--trial-name={trial}", "--patience=50", "--epochs=4", "--units=64", "--num-layers=1", *flags]
    env = dict(os.environ, PYTHONWARNINGS="ignore", KATIB_NAS_MARK_EARLY_STOPPED="true")
    env.pop("KUBERNETES_SERVICE_HOST", None)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_a_trial_the_median_rule_stops_reports_it_and_others_do_not(tmp_path: Path) -> None:
    """The real trainer with the chart's switch on: the trial the median rule stops tries to mark its
    Trial (outside a cluster here, so it says why it could not, and still succeeds); the trial that
    runs to the end does not try."""
    for name in ("peer-1", "peer-2"):
        train_trial(
            tmp_path, "exp", name, "--epochs=4", "--units=64", "--num-layers=1", f"--seed={len(name) + int(name[-1])}"
        )
    rule = ["--early-stopping=median", "--es-start-step=2", "--es-min-trials=2"]
    weak = _trainer(tmp_path, "weak", "--lr=0.00001", "--optimizer=sgd", *rule)
    strong = _trainer(tmp_path, "strong", "--lr=0.01", *rule)
    assert weak.returncode == 0 and strong.returncode == 0, weak.stderr + strong.stderr
    assert json.loads((tmp_path / "exp" / "weak" / "metrics.json").read_text())["stopped_by"] == "median"
    assert "could not mark Trial weak EarlyStopped in Katib (" in weak.stderr
    assert "EarlyStopped" not in strong.stderr


# --- Katib's controllers on the test control plane -----------------------------------------------


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ControlPlane]:
    (tmp_path / "controlplane").mkdir()
    cp = start_control_plane(tmp_path / "controlplane")
    try:
        start_scheduling(cp)
        yield cp
    finally:
        cp.stop()


def _wait(what: str, check: Any, cp: ControlPlane, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{what}:\n{cp.log('katib-controller')[-3000:]}")


def _conditions(trial: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in trial.get("status", {}).get("conditions", [])}


def test_katib_counts_a_trial_the_trainer_marks_as_early_stopped(cluster: ControlPlane) -> None:
    from kubernetes import client

    cp = cluster
    report = validate_file(VALUES)
    assert report.profile is not None
    fake_nodes(cp, report.profile)
    core = client.CoreV1Api(cp.api())
    core.create_namespace(namespace(NS))
    installed = katib_nas("install", str(VALUES), "--namespace", NS, "--kubeconfig", str(cp.kubeconfig))
    assert installed.returncode == 0, installed.stderr
    created = experiment(cp, NS)
    assert created["spec"]["trialTemplate"]["retain"] is True  # the Job outlives the stop, for the collector

    # A Trial as Katib's experiment controller makes one from a suggestion, owned by the Experiment.
    custom = client.CustomObjectsApi(cp.api())
    body = _trial(created, "nas-katib-nas-weak")
    body["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "kubeflow.org/v1beta1",
            "kind": "Experiment",
            "name": created["metadata"]["name"],
            "uid": created["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    body["spec"]["retainRun"] = created["spec"]["trialTemplate"]["retain"]
    custom.create_namespaced_custom_object("kubeflow.org", "v1beta1", NS, "trials", body)

    def trial() -> dict[str, Any]:
        found = custom.get_namespaced_custom_object("kubeflow.org", "v1beta1", NS, "trials", body["metadata"]["name"])
        assert isinstance(found, dict)
        return found

    _wait("Katib's trial controller never ran the trial", lambda: _conditions(trial()).get("Running") == "True", cp)
    job = f"batch.kubernetes.io/job-name={body['metadata']['name']}"
    (pod,) = _wait("no trial pod", lambda: core.list_namespaced_pod(NS, label_selector=job).items, cp)
    assert pod.spec is not None
    account = pod.spec.service_account_name
    assert account == "nas-katib-nas-trial" and pod.spec.automount_service_account_token is True

    # The trainer's call, with a token of the trial pods' ServiceAccount.
    token = core.create_namespaced_service_account_token(
        account, NS, client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
    )
    assert token.status is not None
    server = cp.api().configuration.host
    who = Cluster(server=server, token=str(token.status.token), namespace=NS, ca_file=cp.workdir / "ca.crt")
    marked = mark_early_stopped(body["metadata"]["name"], "median", who)
    assert _conditions(marked)["EarlyStopped"] == "True"

    # Katib's experiment controller counts it, as the Katib UI shows it.
    def counted() -> bool:
        status = experiment(cp, NS).get("status", {})
        stopped: list[str] = status.get("earlyStoppedTrialList") or []
        return status.get("trialsEarlyStopped") == 1 and stopped == [body["metadata"]["name"]]

    _wait("the Experiment does not count the trial as early stopped", counted, cp)
    # Katib's trial controller keeps it EarlyStopped and the Job for the metrics collector (retained).
    time.sleep(2)
    assert _conditions(trial())["EarlyStopped"] == "True" and "Succeeded" not in _conditions(trial())
    assert client.BatchV1Api(cp.api()).read_namespaced_job(body["metadata"]["name"], NS)

    # Least privilege: the token reads a Trial and writes its status, here only.
    for method, path in [
        ("PUT", f"/apis/kubeflow.org/v1beta1/namespaces/{NS}/trials/{body['metadata']['name']}"),  # the spec
        ("GET", f"/apis/kubeflow.org/v1beta1/namespaces/{NS}/trials"),  # a list
        ("GET", f"/apis/kubeflow.org/v1beta1/namespaces/{NS}/experiments/nas-katib-nas"),
        ("GET", "/apis/kubeflow.org/v1beta1/namespaces/kubeflow/trials/any"),
        ("GET", f"/api/v1/namespaces/{NS}/secrets"),
        ("GET", f"/api/v1/namespaces/{NS}/pods"),
    ]:
        with pytest.raises(urllib.error.HTTPError) as denied:
            _call_as(who, method, path, marked)
        assert denied.value.code == 403, (method, path)
    # Only trial pods run under it: the extraction, batch and server pods keep the release's reader account.
    others = core.list_namespaced_pod(NS, label_selector="app.kubernetes.io/component in (extract,batch,server)").items
    assert others and all(p.spec is not None and p.spec.service_account_name != account for p in others)


def _call_as(who: Cluster, method: str, path: str, body: Any) -> Any:
    from katib_nas_contract import katib_status

    return katib_status._call(who, method, path, body if method == "PUT" else None)
