"""What an upgrade may change. Katib's webhook lets a running Experiment change only
spec.parallelTrialCount, spec.maxTrialCount and spec.maxFailedTrialCount
(pkg/webhook/v1beta1/experiment/validator); `katib-nas install` compares the Experiment the release
deployed with the one it is about to render and explains any other change before helm runs."""

from __future__ import annotations

import copy
from typing import Any

from katib_nas_contract.provenance import ENV_CHART

EDITABLE = ("parallelTrialCount", "maxTrialCount", "maxFailedTrialCount")
# Experiment spec field -> the values that render it.
VALUE_PATHS = {
    "objective": "experiment.objective",
    "algorithm": "experiment.algorithm",
    "earlyStopping": "experiment.earlyStopping",
    "parameters": "experiment.parameters",
    "nasConfig": "experiment.nasConfig",
    "resumePolicy": "experiment.resumePolicy",
    "metricsCollectorSpec": "experiment.metricsCollector",
    "trialTemplate": "trial",
}


def _trial_containers(experiment: dict[str, Any]) -> list[dict[str, Any]]:
    spec = experiment.get("spec", {}).get("trialTemplate", {}).get("trialSpec", {}).get("spec", {})
    containers: list[dict[str, Any]] = spec.get("template", {}).get("spec", {}).get("containers", [])
    return containers


def as_helm_upgrades(deployed: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """`wanted` (rendered offline) as `helm upgrade` renders it against the cluster: the chart looks the
    Experiment up and keeps the chart version its frozen trial template records (katib-nas.trialChart),
    so a new chart version alone changes nothing Katib freezes."""
    recorded = {
        c.get("name"): e.get("value")
        for c in _trial_containers(deployed)
        for e in c.get("env") or []
        if e.get("name") == ENV_CHART
    }
    out = copy.deepcopy(wanted)
    for container in _trial_containers(out):
        for entry in container.get("env") or []:
            if entry.get("name") == ENV_CHART and container.get("name") in recorded:
                entry["value"] = recorded[container.get("name")]
    return out


def frozen_changes(deployed: dict[str, Any], wanted: dict[str, Any]) -> list[tuple[str, str]]:
    """(values path, message) for every Experiment spec field that differs and Katib will not update."""
    before, after = deployed.get("spec", {}), wanted.get("spec", {})
    problems = []
    for key in sorted(set(before) | set(after)):
        if key in EDITABLE or before.get(key) == after.get(key):
            continue
        problems.append(
            (
                VALUE_PATHS.get(key, f"experiment ({key})"),
                f"differs from the running Experiment {deployed['metadata']['name']}, and Katib lets a running "
                f"Experiment change only {', '.join(EDITABLE)}; set experiment.name to start a new Experiment "
                "beside it, or uninstall the release first (either way the model PVC and its models stay)",
            )
        )
    return problems


# Katib's webhook, on an Experiment whose spec changes, reads the stored Experiment's status
# (validator.go ValidateExperiment with oldInst): a finished Experiment may change only when it
# stopped at maxTrialCount and its resumePolicy is LongRunning or FromVolume
# (util.IsCompletedExperimentRestartable), and maxTrialCount must stay above status.trials.
RESTARTABLE = ("LongRunning", "FromVolume")
MAX_TRIALS_REACHED = "ExperimentMaxTrialsReached"
NEW_EXPERIMENT = "set experiment.name to start a new Experiment (the models on the PVC stay)"


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            found: dict[str, Any] = condition
            return found
    return None


def status_refusals(live: dict[str, Any], deployed: dict[str, Any], wanted: dict[str, Any]) -> list[tuple[str, str]]:
    """(values path, message) for what Katib refuses given the live Experiment's status, when the
    upgrade changes its spec at all."""
    if deployed.get("spec", {}) == wanted.get("spec", {}):
        return []
    name = live["metadata"]["name"]
    status = live.get("status") or {}
    policy = (live.get("spec") or {}).get("resumePolicy") or "Never"
    ended = _condition(status, "Failed") or _condition(status, "Succeeded")
    if ended is not None:
        why = f"Experiment {name} {ended['type'].lower()} ({ended.get('reason', '')})"
        if ended["type"] == "Failed":
            return [("experiment", f"{why}, and Katib refuses any change to a failed Experiment; {NEW_EXPERIMENT}")]
        if ended.get("reason") != MAX_TRIALS_REACHED:
            message = f"{why}, and Katib lets a finished Experiment go on only when it stopped at maxTrialCount"
            return [("experiment", f"{message}; {NEW_EXPERIMENT}")]
        if policy not in RESTARTABLE:
            message = f"{why} with resumePolicy {policy}, and Katib refuses any change to it then"
            fix = f"to search on, {NEW_EXPERIMENT} with experiment.resumePolicy FromVolume or LongRunning"
            return [("experiment.resumePolicy", f"{message}; {fix}")]
    trials = int(status.get("trials") or 0)
    wanted_max = wanted.get("spec", {}).get("maxTrialCount")
    if wanted_max is not None and trials and int(wanted_max) <= trials:
        goal = "extend the search" if ended is not None else "change the Experiment"
        message = f"{wanted_max} is not above the {trials} trials Experiment {name} has already made"
        return [("experiment.maxTrialCount", f"{message}, which Katib refuses; set it above {trials} to {goal}")]
    return []


def extension_note(live: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    """The progress line when an upgrade extends a finished search (Katib restarts the Experiment)."""
    succeeded = _condition(live.get("status") or {}, "Succeeded")
    if succeeded is None or succeeded.get("reason") != MAX_TRIALS_REACHED:
        return None
    trials = int((live.get("status") or {}).get("trials") or 0)
    wanted_max = int(wanted.get("spec", {}).get("maxTrialCount") or 0)
    if wanted_max <= trials:
        return None
    return (
        f"Experiment {live['metadata']['name']} finished after {trials} trials; Katib restarts it for "
        f"{wanted_max - trials} more (maxTrialCount {wanted_max})"
    )
