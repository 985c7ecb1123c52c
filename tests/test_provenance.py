"""Provenance in every trial record and `katib-nas replay`: real trainers on scikit-learn's digits, the
chart's trial environment as helm renders it, and the extraction pod's image digests from pod JSON as
the API returns it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from generator.cli import main
from generator.upgrade import as_helm_upgrades, frozen_changes
from katib_nas_contract import provenance
from katib_nas_contract.flags import TRAINERS
from katib_nas_contract.record import COMPLETE, CURVE, IMAGE, METRICS, PARAMS, PROVENANCE
from katib_nas_server.trial_images import GONE, ImageRecorder, PodReadError

from .conftest import ROOT, by_kind, helm_template

FRAMEWORKS = sorted(TRAINERS)
FAST = ["--units=32", "--num-layers=1", "--batch-size=64", "--patience=50", "--threads=1"]
CHART_ENV = {
    provenance.ENV_CHART: "katib-nas-0.1.0",
    provenance.ENV_VALUES: "ab" * 32,
    provenance.ENV_IMAGE: "ghcr.io/katib-nas/trainer:0.1.0",
    provenance.ENV_POD: "nas-katib-nas-x7k2p9qz-abcde",
}


def train(framework: str, root: Path, *flags: str, env: dict[str, str] | None = None) -> Path:
    _, *module = TRAINERS[framework].command
    cmd = [sys.executable, *module, "--dataset=digits", f"--output-dir={root}", "--experiment=exp", "--trial-name=t"]
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("KATIB_")} | (env or {})
    proc = subprocess.run(
        [*cmd, *FAST, *flags], capture_output=True, text=True, env=run_env | {"PYTHONWARNINGS": "ignore"}, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    return root / "exp" / "t"


def replay(record: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "generator", "replay", str(record), *extra]
    return subprocess.run(
        cmd, capture_output=True, text=True, cwd=ROOT, timeout=600, env=dict(os.environ, PYTHONWARNINGS="ignore")
    )


_TRAINED: dict[str, Path] = {}


def trained(framework: str, factory: pytest.TempPathFactory) -> Path:
    """A complete two-epoch trial, trained as a trial pod would be (the chart's environment set),
    once per framework for the whole module."""
    if framework not in _TRAINED:
        _TRAINED[framework] = train(framework, factory.mktemp(framework), "--epochs=2", "--seed=3", env=CHART_ENV)
    return _TRAINED[framework]


@pytest.fixture(scope="module", params=FRAMEWORKS)
def record(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    framework = str(request.param)
    return framework, trained(framework, tmp_path_factory)


@pytest.fixture(scope="module")
def pytorch_record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One framework's record, for replay's own logic (the same whichever framework trained it)."""
    return trained("pytorch", tmp_path_factory)


def edit(path: Path, change: Any) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def copy(record: Path, tmp_path: Path) -> Path:
    target = tmp_path / "exp" / record.name
    shutil.copytree(record, target)
    return target


# --- provenance in the record -------------------------------------------------------------------


def test_every_record_carries_its_provenance(record: tuple[str, Path]) -> None:
    framework, root = record
    doc = json.loads((root / PROVENANCE).read_text())
    assert doc["framework"] == framework and doc["seed"] == 3
    library = {"pytorch": "torch", "keras": "tensorflow"}[framework]
    assert {"python", library, "numpy", "onnxruntime", "scikit-learn"} <= set(doc["versions"])
    assert doc["versions"] == provenance.versions(framework)
    # The digest is the data, whichever framework trained on it.
    assert doc["dataset"] == {
        "source": "digits",
        "name": "digits",
        "sha256": "55d98d62e1e91d06998d34a2ba37a8aa660b593631cfc475ca02d25d9eabaf5b",
        "samples": {"train": 1295, "val": 143, "test": 359},
    }
    assert doc["device"] == {"type": "cpu", "name": provenance.device_name("cpu"), "threads": 1}
    assert doc["flags"]["min-delta"] == 1e-4 and doc["flags"]["early-stopping"] == "none"
    assert doc["chart"] == {"version": "katib-nas-0.1.0", "values_sha256": "ab" * 32}
    assert doc["image"] == {"reference": "ghcr.io/katib-nas/trainer:0.1.0", "pod": "nas-katib-nas-x7k2p9qz-abcde"}


def test_a_local_trial_records_no_image(tmp_path: Path) -> None:
    doc = json.loads((train("pytorch", tmp_path, "--epochs=1") / PROVENANCE).read_text())
    assert doc["image"] is None and doc["chart"] is None and doc["versions"]["torch"]


# --- replay --------------------------------------------------------------------------------------


def test_replay_of_a_real_trial_is_bit_identical_on_cpu(record: tuple[str, Path]) -> None:
    _, root = record
    proc = replay(root)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("match: bit-identical on CPU with the same versions"), proc.stdout
    assert "epoch 2/2: accuracy=" in proc.stderr and "(recorded " in proc.stderr  # live progress


def test_replay_reports_altered_metrics_as_a_mismatch(tmp_path: Path, pytorch_record: Path) -> None:
    root = pytorch_record
    copied = copy(root, tmp_path)
    edit(copied / METRICS, lambda m: m.update(test_accuracy=m["test_accuracy"] - 0.001))
    proc = replay(copied)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith(
        "mismatch: expected bit-identical (CPU, same versions and CPU model), but test_accuracy"
    )


def test_replay_with_other_versions_names_them_and_applies_the_tolerance(tmp_path: Path, pytorch_record: Path) -> None:
    root = pytorch_record
    copied = copy(root, tmp_path)
    edit(copied / PROVENANCE, lambda p: p["versions"].update(torch="2.0.0"))
    within = replay(copied)
    assert within.returncode == 0, within.stderr
    assert within.stdout.startswith("match within tolerance (accuracy 0.02 absolute"), within.stdout
    assert "not bit-identical because: torch 2.0.0 recorded" in within.stdout
    edit(copied / METRICS, lambda m: m.update(accuracy=m["accuracy"] - 0.05))
    beyond = replay(copied)
    assert beyond.returncode == 1, beyond.stderr
    assert beyond.stdout.startswith("mismatch beyond tolerance (torch 2.0.0 recorded"), beyond.stdout
    assert "accuracy: " in beyond.stdout and "off by 0.05" in beyond.stdout


def test_replay_repeats_a_stop_by_the_peers_rule(tmp_path: Path) -> None:
    """The median rule stops the trial after epoch 2 against a peer that is always better; the replay
    has no peers and still stops there, so the record replays bit for bit."""
    peer = tmp_path / "exp" / "peer"
    peer.mkdir(parents=True)
    (peer / CURVE).write_text(json.dumps([{"epoch": e, "accuracy": 2.0} for e in (1, 2, 3, 4)]))
    root = train("pytorch", tmp_path, "--epochs=4", "--early-stopping=median", "--es-start-step=2", "--es-min-trials=1")
    metrics = json.loads((root / METRICS).read_text())
    assert (metrics["stopped_by"], metrics["epochs_run"]) == ("median", 2)
    proc = replay(root)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("match: bit-identical") and "2 epochs" in proc.stdout, proc.stdout


def test_replay_on_other_data_is_a_mismatch_before_any_training(tmp_path: Path, record: tuple[str, Path]) -> None:
    _, root = record
    copied = copy(root, tmp_path)
    edit(copied / PROVENANCE, lambda p: p["dataset"].update(sha256="0" * 64))
    proc = replay(copied)
    assert proc.returncode == 1 and "is not the one the trial trained on" in proc.stdout
    assert "epoch 1" not in proc.stderr


def _damage(name: str, change: Any) -> Any:
    def apply(root: Path) -> None:
        path = root / name
        if change is None:
            path.unlink()
        elif isinstance(change, str):
            path.write_text(change)
        else:
            edit(path, change)

    return apply


BAD_RECORDS = [
    ("missing", lambda root: shutil.rmtree(root), "no such directory"),
    ("experiment dir", None, "not a trial record (it holds trials, such as"),
    ("unfinished", _damage(COMPLETE, None), "the trial did not finish (no COMPLETE)"),
    ("params not JSON", _damage(PARAMS, "{"), "params.json: not readable JSON"),
    ("params a list", _damage(PARAMS, "[]"), "params.json: a JSON dict expected, found list"),
    (
        "bad lr",
        _damage(PARAMS, lambda d: d["params"].update(lr="fast")),
        "params.json: params.lr: --lr=fast is not a number",
    ),
    (
        "unknown param",
        _damage(PARAMS, lambda d: d["params"].update(colour=1)),
        "params.colour: not a trainer parameter",
    ),
    ("seed a string", _damage(PARAMS, lambda d: d.update(seed="3")), "params.json: seed: missing or of the wrong type"),
    (
        "no provenance",
        _damage(PROVENANCE, None),
        "provenance.json: missing; the record comes from a trainer that wrote",
    ),
    ("framework", _damage(PROVENANCE, lambda d: d.update(framework="jax")), "framework: 'jax' is none of"),
    ("threads", _damage(PROVENANCE, lambda d: d["device"].pop("threads")), "provenance.json: threads: missing"),
    ("no metrics", _damage(METRICS, None), "metrics.json: missing; the record has no final metrics"),
    ("accuracy text", _damage(METRICS, lambda d: d.update(accuracy="high")), "metrics.json: accuracy: missing or of"),
]


@pytest.mark.parametrize(("case", "damage", "message"), BAD_RECORDS, ids=[c[0] for c in BAD_RECORDS])
def test_a_bad_record_is_one_line_and_exit_2(
    case: str, damage: Any, message: str, tmp_path: Path, pytorch_record: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = pytorch_record
    copied = copy(root, tmp_path)
    target = copied.parent if damage is None else copied
    if damage is not None:
        damage(copied)
    assert main(["replay", str(target)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and message in err, err


# --- the chart's part: what a trial pod is told, and the extraction pod's Role ------------------


def trainer_env(values: dict[str, Any]) -> dict[str, Any]:
    (experiment,) = by_kind(helm_template(values=values), "Experiment")
    container = experiment["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_a_trial_pod_is_told_its_chart_values_image_and_pod_name() -> None:
    env = trainer_env({})
    assert env[provenance.ENV_CHART] == "katib-nas-0.1.0"
    assert len(env[provenance.ENV_VALUES]) == 64 and int(env[provenance.ENV_VALUES], 16) >= 0
    assert env[provenance.ENV_IMAGE] == "ghcr.io/katib-nas/trainer:0.1.0"
    assert env[provenance.ENV_POD] == {"fieldRef": {"fieldPath": "metadata.name"}}
    pinned = trainer_env({"trial": {"image": {"digest": "sha256:" + "c" * 64}}})
    assert pinned[provenance.ENV_IMAGE] == "ghcr.io/katib-nas/trainer@sha256:" + "c" * 64


def test_the_values_digest_follows_the_values_that_shape_a_trial() -> None:
    base = trainer_env({})[provenance.ENV_VALUES]
    # What Katib lets a running Experiment change, and what no trial sees: the template stays as it was.
    counts = {"experiment": {"maxTrialCount": 40, "parallelTrialCount": 4, "maxFailedTrialCount": 5}}
    assert trainer_env(counts)[provenance.ENV_VALUES] == base
    assert trainer_env({"server": {"replicas": 3}, "batchInference": {"batchSize": 7}})[provenance.ENV_VALUES] == base
    assert trainer_env({"trial": {"epochs": 3}})[provenance.ENV_VALUES] != base
    assert trainer_env({"experiment": {"objective": {"goal": 0.9}}})[provenance.ENV_VALUES] != base


def _pod_rules(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The RBAC rules each of the release's pods holds: its ServiceAccount, the RoleBindings naming
    that account, and their Roles' rules."""
    roles = {d["metadata"]["name"]: d["rules"] for d in by_kind(docs, "Role")}
    granted: dict[str, list[dict[str, Any]]] = {}
    for binding in by_kind(docs, "RoleBinding"):
        for subject in binding["subjects"]:
            granted.setdefault(subject["name"], []).extend(roles[binding["roleRef"]["name"]])
    pods = {}
    for kind in ("Deployment", "Job"):
        for obj in by_kind(docs, kind):
            spec = obj["spec"]["template"]["spec"]
            pods[obj["metadata"]["labels"]["app.kubernetes.io/component"]] = granted.get(spec["serviceAccountName"], [])
    return pods


@pytest.mark.parametrize("accounts", [{}, {"serviceAccount": {"create": False, "name": "mine"}}])
def test_only_the_extraction_pod_may_get_pods_and_only_by_name(accounts: dict[str, Any]) -> None:
    """The extraction pod reads trial pods for their image digests; the batch Job and the server,
    which also read the Experiment and its Trials, get no access to pods under the chart's own
    ServiceAccounts. A ServiceAccount the user names is the one every pod uses, so it holds both."""
    docs = helm_template(
        values={"experiment": {"earlyStopping": {"enabled": True, "algorithmName": "median"}}, **accounts}
    )
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    rules = _pod_rules(docs)
    assert set(rules) >= {"extract", "batch", "server"}, set(rules)
    reads = {"apiGroups": ["kubeflow.org"], "resources": ["trials"], "verbs": ["get", "list", "watch"]}
    gets_pods = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}
    shared = bool(accounts)  # one ServiceAccount for every pod
    for component, held in rules.items():
        assert reads in held, (component, held)
        pod_rules = [r for r in held if "pods" in r["resources"]]
        assert pod_rules == ([gets_pods] if component == "extract" or shared else []), (component, held)
    roles = [r for d in by_kind(docs, "Role") if d["metadata"]["name"].endswith("-trial") for r in d["rules"]]
    assert not [r for r in roles if "pods" in r["resources"]]  # trial pods run user code
    without = helm_template(values={"extract": {"enabled": False}})
    assert not [r for d in by_kind(without, "Role") for r in d["rules"] if "pods" in r["resources"]]
    assert [d["metadata"]["name"] for d in by_kind(without, "ServiceAccount")] == [
        "nas-katib-nas",
        "nas-katib-nas-trial",
    ]


# --- the extraction pod: the image digest of each trial's pod ------------------------------------


def pod(name: str, image_id: str | None) -> dict[str, Any]:
    statuses = [
        {"name": "metrics-logger-and-collector", "imageID": "docker.io/kubeflowkatib/collector@sha256:" + "9" * 64}
    ]
    if image_id is not None:
        statuses.append({"name": "trainer", "image": "ghcr.io/katib-nas/trainer:0.1.0", "imageID": image_id})
    return {"metadata": {"name": name}, "status": {"containerStatuses": statuses}}


def trial_dir(experiment: Path, name: str, pod_name: str | None) -> Path:
    root = experiment / name
    root.mkdir(parents=True)
    (root / PARAMS).write_text("{}")
    image = {"reference": "ghcr.io/katib-nas/trainer:0.1.0", "pod": pod_name} if pod_name else None
    (root / PROVENANCE).write_text(json.dumps({"image": image}))
    return root


def test_the_extraction_pod_records_each_trial_pods_image_digest_once(tmp_path: Path) -> None:
    digest = "sha256:" + "a" * 64
    running = trial_dir(tmp_path, "t1", "pod-1")
    gone = trial_dir(tmp_path, "t2", "pod-2")
    starting = trial_dir(tmp_path, "t3", "pod-3")
    local = trial_dir(tmp_path, "t4", None)
    pods = {"pod-1": pod("pod-1", f"ghcr.io/katib-nas/trainer@{digest}"), "pod-3": pod("pod-3", None)}
    asked: list[str] = []

    def read(name: str) -> dict[str, Any] | None:
        asked.append(name)
        return pods.get(name)

    recorder = ImageRecorder(tmp_path, read, clock=lambda: 100.0)
    assert recorder() == ["t1: ran image ghcr.io/katib-nas/trainer@" + digest, "t2: ran image unknown (pod gone)"]
    assert json.loads((running / IMAGE).read_text()) == {
        "pod": "pod-1",
        "image": "ghcr.io/katib-nas/trainer:0.1.0",
        "imageID": f"ghcr.io/katib-nas/trainer@{digest}",
        "digest": digest,
        "read_at": 100.0,
    }
    assert json.loads((gone / IMAGE).read_text())["note"] == GONE
    assert not (starting / IMAGE).exists() and not (local / IMAGE).exists()
    assert sorted(asked) == ["pod-1", "pod-2", "pod-3"]
    asked.clear()
    pods["pod-3"] = pod("pod-3", "sha256:" + "b" * 64)  # an image loaded into the node: a bare image id
    assert recorder() == ["t3: ran image sha256:" + "b" * 64] and asked == ["pod-3"]
    assert json.loads((starting / IMAGE).read_text())["digest"] == "sha256:" + "b" * 64
    assert recorder() == []


def test_without_a_role_for_pods_the_extraction_pod_says_so_once(tmp_path: Path) -> None:
    trial_dir(tmp_path, "t1", "pod-1")

    def forbidden(name: str) -> dict[str, Any] | None:
        raise PodReadError("403 Forbidden", forbidden=True)

    recorder = ImageRecorder(tmp_path, forbidden)
    (line,) = recorder()
    assert "cannot read trial pods (403 Forbidden)" in line and "allow get on pods" in line
    assert recorder() == []


def test_an_upgrade_to_a_new_chart_version_alone_changes_nothing_katib_freezes() -> None:
    """On `helm upgrade` the chart looks the Experiment up and keeps the chart version its frozen trial
    template records (helm-unittest: provenance_test.yaml); `katib-nas install` compares the same way."""
    (deployed,) = by_kind(helm_template(values={}), "Experiment")
    trial = deployed["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    next(e for e in trial["env"] if e["name"] == provenance.ENV_CHART)["value"] = "katib-nas-0.0.9"
    (wanted,) = by_kind(helm_template(values={}), "Experiment")
    assert frozen_changes(deployed, wanted) and not frozen_changes(deployed, as_helm_upgrades(deployed, wanted))
    (longer,) = by_kind(helm_template(values={"trial": {"epochs": 3}}), "Experiment")
    assert [path for path, _ in frozen_changes(deployed, as_helm_upgrades(deployed, longer))] == ["trial"]
