"""Install the chart into a real control plane with Katib's own webhooks, through the generator's
install path (pyhelm3 and the pinned helm CLI): install, upgrade, rollback and uninstall."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator.errors import HelmError
from generator.helm import install

from .conftest import PROFILE_VALUES, ROOT, tool, tool_env
from .controlplane import ControlPlane, start_control_plane
from .test_validate import BASES, CASES, merged

INJECTION = {"katib.kubeflow.org/metrics-collector-injection": "enabled"}
BASE = yaml.safe_load((ROOT / "values" / "microk8s.yaml").read_text())


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    from kubernetes import client

    cp = start_control_plane(tmp_path_factory.mktemp("controlplane"))
    try:
        # Katib's webhook refuses Experiments (StdOut collector) in namespaces without this label.
        client.CoreV1Api(cp.api()).create_namespace(namespace("webhook"))
        yield cp
    finally:
        cp.stop()


def namespace(name: str) -> Any:
    from kubernetes import client

    return client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=INJECTION))


def katib_nas(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "generator", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=tool_env(), cwd=ROOT, timeout=120)


def helm(cp: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [tool("helm"), *args, "--kubeconfig", str(cp.kubeconfig)]
    return subprocess.run(cmd, capture_output=True, text=True, env=tool_env(), timeout=120)


def experiment(cp: ControlPlane, namespace: str) -> dict[str, Any]:
    from kubernetes import client

    found = client.CustomObjectsApi(cp.api()).get_namespaced_custom_object(
        "kubeflow.org", "v1beta1", namespace, "experiments", "nas-katib-nas"
    )
    assert isinstance(found, dict)
    return found


@pytest.mark.parametrize("values", PROFILE_VALUES, ids=[p.stem for p in PROFILE_VALUES])
def test_install_upgrade_rollback_uninstall(control_plane: ControlPlane, values: Path, tmp_path: Path) -> None:
    from kubernetes import client

    ns = f"ml-{values.stem}"
    kube = ["--namespace", ns, "--kubeconfig", str(control_plane.kubeconfig)]
    installed = katib_nas("install", str(values), *kube)
    assert installed.returncode == 0, installed.stderr
    assert "release nas revision 1: ReleaseRevisionStatus.DEPLOYED" in installed.stdout
    # The namespace did not exist: created with the label Katib's webhook needs to admit the Experiment.
    assert f"namespace {ns} created with the label katib.kubeflow.org/metrics-collector-injection=enabled" in (
        installed.stderr
    )
    created_ns = client.CoreV1Api(control_plane.api()).read_namespace(ns)
    assert created_ns.metadata and (created_ns.metadata.labels or {}).items() >= INJECTION.items()
    created = experiment(control_plane, ns)
    max_trials = created["spec"]["maxTrialCount"]

    # Katib lets a running Experiment change its trial counts.
    data = yaml.safe_load(values.read_text())
    data["profile"] = str(ROOT / "values" / data["profile"]) if data["profile"].endswith(".yaml") else data["profile"]
    data["experiment"] = {**data.get("experiment", {}), "maxTrialCount": max_trials + 4}
    bigger = tmp_path / values.name
    bigger.write_text(yaml.safe_dump(data))
    upgraded = katib_nas("install", str(bigger), *kube)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "revision 2" in upgraded.stdout
    assert experiment(control_plane, ns)["spec"]["maxTrialCount"] == max_trials + 4

    # Anything else Katib refuses on a running Experiment: the generator says so, and helm never runs.
    data["experiment"]["algorithm"] = {"algorithmName": "tpe"}
    data["trial"] = {**data.get("trial", {}), "epochs": 7}
    changed = tmp_path / f"changed-{values.name}"
    changed.write_text(yaml.safe_dump(data))
    refused = katib_nas("install", str(changed), *kube)
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[1:] == [
        f"{changed}: {path}: differs from the running Experiment nas-katib-nas, and Katib lets a running "
        "Experiment change only parallelTrialCount, maxTrialCount, maxFailedTrialCount; set experiment.name to "
        "start a new Experiment beside it, or uninstall the release first (either way the model PVC and its "
        "models stay)"
        for path in ("experiment.algorithm", "trial")
    ]
    assert "REVISION: 2" in helm(control_plane, "status", "nas", "--namespace", ns).stdout
    # ...which is what Katib's webhook says when helm is run on its own.
    direct = helm(control_plane, "upgrade", "nas", str(ROOT / "charts" / "katib-nas"), "-f", str(changed), "-n", ns)
    assert direct.returncode != 0
    assert "only spec.parallelTrialCount, spec.maxTrialCount and spec.maxFailedTrialCount are editable" in direct.stderr

    rolled = helm(control_plane, "rollback", "nas", "1", "--namespace", ns)
    assert rolled.returncode == 0, rolled.stderr
    assert experiment(control_plane, ns)["spec"]["maxTrialCount"] == max_trials

    # No --wait: without kube-controller-manager nothing lifts the PVC's protection finalizer.
    removed = helm(control_plane, "uninstall", "nas", "--namespace", ns)
    assert removed.returncode == 0, removed.stderr
    assert helm(control_plane, "status", "nas", "--namespace", ns).returncode != 0
    deadline = time.monotonic() + 30  # Katib's controller removes its finalizer, then the object goes
    while True:
        try:
            experiment(control_plane, ns)
        except client.ApiException as exc:
            assert exc.status == 404
            break
        assert time.monotonic() < deadline, control_plane.log("katib-controller")[-3000:]
        time.sleep(0.2)


def test_install_refuses_a_namespace_katib_would_refuse(control_plane: ControlPlane) -> None:
    """helm alone would create everything else and then fail on the Experiment, leaving a failed
    release behind; katib-nas stops before helm runs."""
    from kubernetes import client

    core = client.CoreV1Api(control_plane.api())
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="unlabelled")))
    values = ROOT / "values" / "microk8s.yaml"
    refused = katib_nas(
        "install", str(values), "--namespace", "unlabelled", "--kubeconfig", str(control_plane.kubeconfig)
    )
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[1:] == [
        "namespace unlabelled lacks the label katib.kubeflow.org/metrics-collector-injection=enabled, without which "
        "Katib's webhook refuses every Experiment; run `kubectl label namespace unlabelled "
        "katib.kubeflow.org/metrics-collector-injection=enabled` and install again"
    ]
    assert helm(control_plane, "list", "--namespace", "unlabelled", "--all", "--short").stdout == ""
    # A dry run into a namespace that does not exist says what install would do, and creates nothing.
    dry = katib_nas(
        "install", str(values), "--dry-run", "--namespace", "later", "--kubeconfig", str(control_plane.kubeconfig)
    )
    assert dry.returncode == 0, dry.stderr
    assert "namespace later would be created with the label" in dry.stderr
    assert "later" not in {n.metadata.name for n in core.list_namespace().items if n.metadata}
    assert core.list_namespaced_persistent_volume_claim("unlabelled").items == []
    # helm on its own: Katib's webhook refuses the Experiment after the other objects are created.
    direct = helm(
        control_plane, "install", "nas", str(ROOT / "charts" / "katib-nas"), "-f", str(values), "-n", "unlabelled"
    )
    assert direct.returncode != 0 and "the namespace lacks label" in direct.stderr, direct.stderr
    assert "failed" in helm(control_plane, "status", "nas", "--namespace", "unlabelled").stdout
    assert len(core.list_namespaced_persistent_volume_claim("unlabelled").items) == 1
    # The same refusal through katib-nas's own helm call: helm gathers it under `1 error occurred:`,
    # and the one line katib-nas prints is the cause, not that header.
    with pytest.raises(HelmError) as failed:
        install(BASE, release="again", namespace="unlabelled", kubeconfig=control_plane.kubeconfig)
    assert "\n" not in failed.value.message and "error occurred" not in failed.value.message
    assert failed.value.message.startswith("helm: Error: admission webhook "), failed.value.message
    assert "the namespace lacks label" in failed.value.message


# --- a search that goes on ---------------------------------------------------------------------


def finish(cp: ControlPlane, ns: str, reason: str, trials: int) -> None:
    """Write what Katib's experiment controller writes when an Experiment ends, through the status
    subresource, once the controller has taken the Experiment in (so it does not overwrite it)."""
    from kubernetes import client

    deadline = time.monotonic() + 30
    while not any(c["type"] == "Created" for c in experiment(cp, ns).get("status", {}).get("conditions", [])):
        assert time.monotonic() < deadline, cp.log("katib-controller")[-3000:]
        time.sleep(0.2)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    kind = "Failed" if reason == "ExperimentFailed" else "Succeeded"
    conditions = [
        {"type": "Created", "status": "True", "reason": "ExperimentCreated", "message": "Experiment is created"},
        {"type": "Running", "status": "False", "reason": "ExperimentRunning", "message": "Experiment is running"},
        {"type": kind, "status": "True", "reason": reason, "message": "Experiment has ended"},
    ]
    for c in conditions:
        c.update(lastUpdateTime=now, lastTransitionTime=now)
    status = {"conditions": conditions, "trials": trials, "trialsSucceeded": trials, "completionTime": now}
    client.CustomObjectsApi(cp.api()).patch_namespaced_custom_object_status(
        "kubeflow.org", "v1beta1", ns, "experiments", "nas-katib-nas", {"status": status}
    )


EXTENSIONS = [  # resumePolicy, how the Experiment ended, the new maxTrialCount, the line install prints
    ("FromVolume", "ExperimentMaxTrialsReached", 16, None),
    ("LongRunning", "ExperimentMaxTrialsReached", 16, None),
    (
        "Never",
        "ExperimentMaxTrialsReached",
        16,
        "experiment.resumePolicy: Experiment nas-katib-nas succeeded (ExperimentMaxTrialsReached) with resumePolicy "
        "Never, and Katib refuses any change to it then; to search on, set experiment.name to start a new "
        "Experiment (the models on the PVC stay) with experiment.resumePolicy FromVolume or LongRunning",
    ),
    (
        "FromVolume",
        "ExperimentGoalReached",
        16,
        "experiment: Experiment nas-katib-nas succeeded (ExperimentGoalReached), and Katib lets a finished "
        "Experiment go on only when it stopped at maxTrialCount; set experiment.name to start a new Experiment "
        "(the models on the PVC stay)",
    ),
    (
        "FromVolume",
        "ExperimentFailed",
        16,
        "experiment: Experiment nas-katib-nas failed (ExperimentFailed), and Katib refuses any change to a failed "
        "Experiment; set experiment.name to start a new Experiment (the models on the PVC stay)",
    ),
    (
        "FromVolume",
        "ExperimentMaxTrialsReached",
        10,
        "experiment.maxTrialCount: 10 is not above the 12 trials Experiment nas-katib-nas has already made, which "
        "Katib refuses; set it above 12 to extend the search",
    ),
]


@pytest.mark.parametrize(
    ("policy", "reason", "raised", "refusal"), EXTENSIONS, ids=[f"{e[0]}-{e[2]}" for e in EXTENSIONS]
)
def test_install_extends_a_finished_search_where_katib_would(
    control_plane: ControlPlane, tmp_path: Path, policy: str, reason: str, raised: int, refusal: str | None
) -> None:
    """`katib-nas install` reads the finished Experiment's status: it extends the search where Katib
    restarts the Experiment, and refuses with one line where Katib's webhook would refuse the upgrade."""
    ns = f"go-on-{policy.lower()}-{reason.lower().removeprefix('experiment')}-{raised}"
    kube = ["--namespace", ns, "--kubeconfig", str(control_plane.kubeconfig)]
    data = {**BASE, "experiment": {**BASE["experiment"], "maxTrialCount": 12}}
    if policy != "FromVolume":  # FromVolume is the chart's default
        data["experiment"]["resumePolicy"] = policy
    first = tmp_path / "values.yaml"
    first.write_text(yaml.safe_dump(data))
    installed = katib_nas("install", str(first), *kube)
    assert installed.returncode == 0, installed.stderr
    assert experiment(control_plane, ns)["spec"]["resumePolicy"] == policy
    finish(control_plane, ns, reason, trials=12)

    data["experiment"]["maxTrialCount"] = raised
    more = tmp_path / "more.yaml"
    more.write_text(yaml.safe_dump(data))
    upgraded = katib_nas("install", str(more), *kube)
    if refusal is None:
        assert upgraded.returncode == 0, upgraded.stderr
        assert f"finished after 12 trials; Katib restarts it for {raised - 12} more" in upgraded.stderr
        assert experiment(control_plane, ns)["spec"]["maxTrialCount"] == raised
        deadline = time.monotonic() + 30  # Katib's controller restarts the finished Experiment
        while True:
            types = {c["type"]: c["status"] for c in experiment(control_plane, ns)["status"]["conditions"]}
            if types.get("Restarting") == "True" or types.get("Running") == "True":
                break
            assert time.monotonic() < deadline, (types, control_plane.log("katib-controller")[-3000:])
            time.sleep(0.2)
        assert "Succeeded" not in types
        return
    assert upgraded.returncode == 2
    assert upgraded.stderr.splitlines()[1:] == [f"{more}: {refusal}"]
    assert "REVISION: 1" in helm(control_plane, "status", "nas", "--namespace", ns).stdout
    # ...where Katib's webhook refuses the same upgrade when helm runs on its own.
    direct = helm(control_plane, "upgrade", "nas", str(ROOT / "charts" / "katib-nas"), "-f", str(more), "-n", ns)
    assert direct.returncode != 0 and "validator.experiment.katib.kubeflow.org" in direct.stderr, direct.stderr
    assert experiment(control_plane, ns)["spec"]["maxTrialCount"] == 12


# --- Katib's webhook against the generator ---------------------------------------------------

PARAMETERS = {  # trainer flags a search may tune, with the ranges the trainer takes
    "lr": ("double", 0.0001, 0.5),
    "dropout": ("double", 0.0, 0.9),
    "num-layers": ("int", 1, 6),
    "units": ("int", 8, 512),
}
CHOICES = {"optimizer": ["adam", "adamw", "sgd", "rmsprop"], "batch-size": ["16", "32", "64", "128"]}


DOUBLE_STEPS = (0.01, 0.05, 0.1)
ALGORITHMS = ["random", "grid", "tpe", "bayesianoptimization"]


def _range(draw: st.DrawFn, name: str, algorithm: str) -> dict[str, Any]:
    """A range that is valid by construction: min < max, a step no wider than the range (grid needs
    one for doubles), and a positive min for bayesianoptimization's doubles."""
    kind, low, high = PARAMETERS[name]
    if kind == "int":
        a = draw(st.integers(int(low), int(high) - 1))
        b = draw(st.integers(a + 1, int(high)))
        space: dict[str, Any] = {"min": str(a), "max": str(b)}
        if draw(st.booleans()):
            space["step"] = str(draw(st.integers(1, min(3, b - a))))
        return space
    low = max(low, 0.001) if algorithm == "bayesianoptimization" else low
    width = DOUBLE_STEPS[0] * 1.1  # room for the smallest step after rounding
    lo = draw(st.floats(low, high - width))
    hi = draw(st.floats(lo + width, high))
    space = {"min": str(lo), "max": str(hi)}
    if algorithm == "grid" or draw(st.booleans()):
        space["step"] = str(draw(st.sampled_from([s for s in DOUBLE_STEPS if s <= hi - lo])))
    return space


@st.composite
def search_spaces(draw: st.DrawFn) -> dict[str, Any]:
    """Experiments the generator accepts, built valid rather than filtered: ranges, lists, steps,
    algorithms, counts and names up to Katib's 40-character limit."""
    from generator.checks_search import grid_size
    from generator.models import Parameter

    algorithm = draw(st.sampled_from(ALGORITHMS))
    parameters = []
    for name in draw(st.lists(st.sampled_from(sorted(PARAMETERS | CHOICES)), min_size=1, max_size=4, unique=True)):
        if name in CHOICES:
            values = draw(st.lists(st.sampled_from(CHOICES[name]), min_size=1, max_size=4, unique=True))
            kind = draw(st.sampled_from(["categorical", "discrete"] if name == "batch-size" else ["categorical"]))
            parameters.append({"name": name, "parameterType": kind, "feasibleSpace": {"list": values}})
        else:
            space = _range(draw, name, algorithm)
            parameters.append({"name": name, "parameterType": PARAMETERS[name][0], "feasibleSpace": space})
    most = 12
    if algorithm == "grid":  # Katib's grid service stops at the last grid point
        most = min(most, grid_size([Parameter.model_validate(p) for p in parameters]) or most)
    max_trials = draw(st.integers(1, most))
    named = {}
    if draw(st.booleans()):  # 28 to 40 characters: up to Katib's limit
        middle = draw(st.integers(26, 38))
        named["name"] = draw(st.from_regex(rf"[a-z][a-z0-9-]{{{middle}}}[a-z0-9]", fullmatch=True))
    return {
        **named,
        "algorithm": {"algorithmName": algorithm},
        # Katib's grid (its optuna service) cannot resume FromVolume, which validate refuses.
        **({"resumePolicy": "LongRunning"} if algorithm == "grid" else {}),
        "parameters": parameters,
        "parallelTrialCount": draw(st.integers(1, min(4, max_trials))),
        "maxTrialCount": max_trials,
        "maxFailedTrialCount": draw(st.integers(0, min(3, max_trials))),
    }


def _rendered_experiment(data: dict[str, Any]) -> dict[str, Any]:
    """helm template with the generator's checks skipped; KServe's API counts as present, so the
    chart's CRD guard does not stand in for the cluster."""
    from generator import helm

    apis = [helm.KATIB_API, helm.KSERVE_API]
    docs = helm.template(data, release="nas", namespace="webhook", kube_version="1.34.2", api_versions=apis)
    found: dict[str, Any] = next(d for d in docs if d["kind"] == "Experiment")
    return found


def _admit(cp: ControlPlane, body: dict[str, Any]) -> None:
    """Send the Experiment through admission (Katib's webhooks included) without storing it."""
    from kubernetes import client

    client.CustomObjectsApi(cp.api()).create_namespaced_custom_object(
        "kubeflow.org", "v1beta1", "webhook", "experiments", body, dry_run="All"
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(experiment=search_spaces())
def test_katibs_webhook_accepts_every_experiment_the_generator_accepts(
    control_plane: ControlPlane, experiment: dict[str, Any]
) -> None:
    from kubernetes import client

    from generator.validate import validate_data

    data = {**BASE, "experiment": {**BASE["experiment"], **experiment}}
    report = validate_data(data, "values.yaml", ROOT / "values")
    assert not report.errors, [str(p) for p in report.errors]  # the strategy builds only valid searches
    try:
        _admit(control_plane, _rendered_experiment(data))
    except client.ApiException as exc:
        raise AssertionError(
            f"the generator accepts what Katib rejects:\n{exc.body}\n{yaml.safe_dump(experiment)}"
        ) from None


# --- the malformed-values table against Katib --------------------------------------------------
#
# Where each case of tests/test_validate.py's table is stopped when the generator is skipped (a user
# running helm on its own). The generator stops all of them before helm runs; this says which of
# them anything else would catch before the release is installed, and checks it:
#   helm       the chart's schema or its render guards refuse it; nothing reaches the cluster
#   webhook    Katib's Experiment webhook refuses it (the detail is the field its message names)
# and for the rest Katib's webhook admits the Experiment, and the failure comes after install:
#   suggestion Katib's suggestion or early-stopping service fails on the search space or settings
#   trial      trials fail or report nothing: the katib-nas trainer's flags, metrics and rules
#   cluster    pods cannot be placed or cannot share the PVC, or the generator has no cluster profile
#   promotion  the promotion step finds no trial record that holds what the budget compares
#   batch      the batch-inference Job fails once the search ends
FIRST_STOP = {
    "typo": ("helm", "don't meet the specifications of the schema"),
    "wrong-type": ("helm", "don't meet the specifications of the schema"),
    "name-too-long": ("helm", "don't meet the specifications of the schema"),
    "both-spaces": ("helm", "katib-nas: experiment.parameters and experiment.nasConfig are both set"),
    "parallel-above-max": ("helm", "katib-nas: experiment.parallelTrialCount (5) is larger"),
    "failed-above-max": ("helm", "katib-nas: experiment.maxFailedTrialCount (20) is larger"),
    "file-collector-without-source": ("helm", "katib-nas: experiment.metricsCollector.kind is File"),
    "collector-kind-not-katibs": ("helm", "don't meet the specifications of the schema"),
    "budget-not-positive": ("helm", "don't meet the specifications of the schema"),
    # Katib admits it; promotion would find no record holding the objective and rule out every model.
    "budget-objective-not-in-records": ("promotion", ""),
    # json.dumps writes inf as Infinity, which helm's YAML reads as a string: the schema wants a number.
    "goal-not-finite": ("helm", "don't meet the specifications of the schema"),
    # Katib admits it; the batch Job fails once the search ends (its samples do not fit the model).
    "batch-scores-another-data-set": ("batch", ""),
    "prometheus-collector": ("webhook", "spec.metricsCollectorSpec.collector.kind"),
    "duplicate-parameter": ("webhook", "spec.trialTemplate.trialParameters[1].name"),
    "list-on-double": ("webhook", "spec.parameters[0].feasibleSpace.list"),
    "range-on-categorical": ("webhook", "spec.parameters[0].feasibleSpace"),
    "objective-in-additional": ("webhook", "spec.objective.additionalMetricNames"),
    "derived-name-too-long": ("webhook", "metadata.name"),
    "derived-name-starts-with-a-digit": ("webhook", "metadata.name"),
    "trial-parameter-bad-reference": ("webhook", "spec.trialTemplate.trialParameters[0].reference"),
    "trial-parameter-unused": ("webhook", "spec.trialTemplate.trialParameters[1].name"),
    "trial-parameter-in-env-without-entry": ("webhook", "spec.trialTemplate"),
    "bad-quantity": ("webhook", "spec.trialTemplate"),
    **dict.fromkeys(
        [
            "min-not-below-max",
            "step-zero",
            "step-wider-than-range",
            "empty-list",
            "duplicate-list-values",
            "grid-double-without-step",
            "grid-smaller-than-maxtrialcount",
            "bayesian-double-min-zero",
            "hyperband-without-settings",
            "hyperband-parallelism",
            "pbt-without-settings",
            "cmaes-one-dimension",
            "tpe-unknown-setting",
            "enas-without-nasconfig",
            "medianstop-start-step-zero",
            # Katib's webhook reads none of these bounds as a number; the service is the first that does.
            "bound-not-a-number",
            "bound-past-a-double",
            "goptuna-bound-of-5000-digits",
            "grid-of-doubles-past-a-double",
        ],
        ("suggestion", ""),
    ),
    **dict.fromkeys(
        [
            "early-stopping-push-collector",
            "early-stopping-tensorflowevent-collector",
            "halving-reduction-factor-one",
            "median-has-no-reduction-factor",
            "shared-rule-with-another-trainer",
            "objective-not-printed",
            "metrics-file-in-a-mounted-directory",
            "unknown-trainer-flag",
            "trainer-flag-out-of-range",
            "trainer-flag-bad-choice",
            # The trainer refuses a budget over its card before training (gpu_memory.fraction).
            "gpu-budget-over-a-whole-card",
            "early-stopping-setting-of-5000-digits",  # the median rule's settings are trainer flags
        ],
        ("trial", ""),
    ),
    **dict.fromkeys(
        [
            "trial-fits-no-node",
            "resources-missing",
            "gpu-on-cpu-profile",
            "more-gpus-than-a-node",
            "gpu-profile-without-gpu-request",
            "gpu-without-limit",
            "gpu-without-runtime-class",
            "multi-node-readwriteonce",
            "rwx-without-rwx-storage",
            "kserve-on-one-small-node",
            "profile-unset",
            "profile-file-missing",
            "memory-past-a-quantity",
            "cpu-past-a-quantity",
        ],
        ("cluster", ""),
    ),
}
REFUSED = [c for c in CASES if c[4] != 0]


def test_every_refused_case_says_where_katib_would_stop_it() -> None:
    assert sorted(FIRST_STOP) == sorted(c[0] for c in REFUSED)


@pytest.mark.parametrize(("case", "base", "override"), [c[:3] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_katibs_webhook_on_the_malformed_values_table(
    control_plane: ControlPlane, case: str, base: str, override: dict[str, Any]
) -> None:
    from kubernetes import client

    from generator.errors import HelmError

    stage, detail = FIRST_STOP[case]
    try:
        body = _rendered_experiment(merged(BASES[base], override))
    except HelmError as exc:
        assert stage == "helm", f"helm refuses it, the table says {stage}: {exc}"
        assert detail in f"{exc}\n{exc.stderr}"
        return
    assert stage != "helm", "helm renders it"
    try:
        _admit(control_plane, body)
    except client.ApiException as exc:
        said = exc.body or ""
        assert stage == "webhook", f"Katib's webhook refuses it, the table says {stage}: {said}"
        assert exc.status == 400 and "validator.experiment.katib.kubeflow.org" in said
        assert detail in said, said
        return
    assert stage != "webhook", "Katib's webhook admits it"


# Counts above maxTrialCount: the chart's guards refuse them at render time, so the table's cases
# never reach Katib. Rendered with safe counts and the case's put back, Katib's webhook refuses them too.
REJECTED = [
    ("parallel-over-max", {"parallelTrialCount": 5, "maxTrialCount": 4}, "spec.parallelTrialCount"),
    ("failed-over-max", {"maxFailedTrialCount": 5, "maxTrialCount": 4}, "spec.maxFailedTrialCount"),
]


@pytest.mark.parametrize(("change", "where"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_katibs_webhook_refuses_the_counts_the_chart_guards(
    control_plane: ControlPlane, change: dict[str, Any], where: str
) -> None:
    from kubernetes import client

    from generator.validate import validate_data

    data = {**BASE, "experiment": {**BASE["experiment"], **change}}
    report = validate_data(data, "values.yaml", ROOT / "values")
    assert report.errors, "the generator accepts this"
    body = _rendered_experiment(
        {**data, "experiment": {**data["experiment"], "parallelTrialCount": 1, "maxFailedTrialCount": 0}}
    )
    body["spec"].update(change)
    with pytest.raises(client.ApiException) as denied:
        _admit(control_plane, body)
    body_text = denied.value.body or ""
    assert denied.value.status == 400 and "validator.experiment.katib.kubeflow.org" in body_text
    assert where in body_text, body_text


# --- collector kinds and trial parameters against Katib's webhook ------------------------------

COLLECTORS = [  # kind, what it needs next to it
    ("StdOut", {}),
    ("File", {"source": {"fileSystemPath": {"path": "/var/log/katib/metrics.log", "kind": "File", "format": "TEXT"}}}),
    ("TensorFlowEvent", {"source": {"fileSystemPath": {"path": "/tmp/tfevents", "kind": "Directory"}}}),
    ("Custom", {"customCollector": {"name": "collector", "image": "collector:1"}}),
    ("Push", {}),
    ("PrometheusMetric", {}),
    # Names Katib does not know: older katib-nas spellings and a made-up one.
    ("TfEvent", {"source": {"fileSystemPath": {"path": "/tmp/tfevents", "kind": "Directory"}}}),
    ("Prometheus", {}),
    ("None", {}),
]


@pytest.mark.parametrize(("kind", "extra"), COLLECTORS, ids=[c[0] for c in COLLECTORS])
def test_katibs_webhook_and_the_generator_agree_on_collector_kinds(
    control_plane: ControlPlane, kind: str, extra: dict[str, Any]
) -> None:
    from kubernetes import client

    from generator.validate import validate_data

    collector = {"kind": kind, **extra}
    data = {**BASE, "experiment": {**BASE["experiment"], "metricsCollector": collector}}
    report = validate_data(data, "values.yaml", ROOT / "values")
    generator_refuses = any(p.path == "experiment.metricsCollector.kind" for p in report.errors)
    # Kinds the chart's schema refuses are rendered as StdOut, then put back for the webhook.
    renderable = {**BASE, "experiment": {**BASE["experiment"], "metricsCollector": {"kind": "StdOut"}}}
    body = _rendered_experiment(data if not generator_refuses else renderable)
    body["spec"]["metricsCollectorSpec"] = {
        "collector": {
            "kind": kind,
            **({"customCollector": extra["customCollector"]} if "customCollector" in extra else {}),
        },
        **({"source": extra["source"]} if "source" in extra else {}),
    }
    try:
        _admit(control_plane, body)
        webhook_refuses = False
    except client.ApiException as exc:
        assert exc.status == 400 and "spec.metricsCollectorSpec.collector.kind" in (exc.body or ""), exc.body
        webhook_refuses = True
    assert generator_refuses == webhook_refuses, [str(p) for p in report.errors]


def test_katibs_webhook_counts_a_trial_parameter_used_only_in_env(control_plane: ControlPlane) -> None:
    """Katib searches the whole trial template for `${trialParameters.X}`; so does validate."""
    from kubernetes import client

    from generator.validate import validate_data

    trial = {
        **BASE["trial"],
        "args": ["--lr=${trialParameters.lr}"],
        "trialParameters": [{"name": "lr", "reference": "lr"}, {"name": "units", "reference": "units"}],
        "env": [{"name": "UNITS", "value": "${trialParameters.units}"}],
    }
    used = {**BASE, "trial": trial}
    assert validate_data(used, "values.yaml", ROOT / "values").errors == []
    _admit(control_plane, _rendered_experiment(used))
    # An env reference without its trial parameter: both refuse it.
    unlisted = {**BASE, "trial": {**trial, "trialParameters": trial["trialParameters"][:1]}}
    assert [p.path for p in validate_data(unlisted, "values.yaml", ROOT / "values").errors] == ["trial.env"]
    with pytest.raises(client.ApiException) as denied:
        _admit(control_plane, _rendered_experiment(unlisted))
    assert "in spec.trialTemplate not found in spec.trialParameters" in (denied.value.body or "")
