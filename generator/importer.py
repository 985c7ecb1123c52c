"""`katib-nas import`: turn an existing Katib Experiment (such as a hand-written continuous_nas.yaml)
into a values file that renders back to an equivalent Experiment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import ImportExperimentError
from .models import ChartValues
from .validate import chart_defaults
from .yamlio import coalesce, format_validation_error

# Katib's defaulting webhook fills these when an Experiment leaves them out.
KATIB_DEFAULT_PARALLEL = 3


def _find_experiment(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ImportExperimentError(f"{path}: file not found; pass a Katib Experiment YAML file")
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    except yaml.YAMLError as exc:
        raise ImportExperimentError(f"{path}: not valid YAML ({exc})") from None
    experiments = [d for d in docs if isinstance(d, dict) and d.get("kind") == "Experiment"]
    if len(experiments) != 1:
        raise ImportExperimentError(f"{path}: expected one kind: Experiment document, found {len(experiments)}")
    exp = experiments[0]
    if not str(exp.get("apiVersion", "")).startswith("kubeflow.org/"):
        raise ImportExperimentError(
            f"{path}: apiVersion {exp.get('apiVersion')!r} is not a Katib Experiment (kubeflow.org/v1beta1)"
        )
    return exp


def _split_image(image: str) -> dict[str, str]:
    if "@" in image:
        repository, digest = image.split("@", 1)
        return {"repository": repository, "digest": digest}
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = image.rsplit(":", 1)
        return {"repository": repository, "tag": tag}
    # No tag means :latest to the container runtime; say so rather than inherit the chart's appVersion.
    return {"repository": image, "tag": "latest"}


def _trial(spec: dict[str, Any], source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The trial values and the persistence values of the Experiment's trial template."""
    template = spec.get("trialTemplate") or {}
    if "configMap" in template:
        raise ImportExperimentError(
            f"{source}: spec.trialTemplate.configMap: trial templates in ConfigMaps cannot "
            "be imported; inline the Job under trialTemplate.trialSpec"
        )
    trial_spec = template.get("trialSpec") or {}
    if trial_spec.get("apiVersion") != "batch/v1" or trial_spec.get("kind") != "Job":
        raise ImportExperimentError(
            f"{source}: spec.trialTemplate.trialSpec: only batch/v1 Job trials can be imported, not "
            f"{trial_spec.get('apiVersion')}/{trial_spec.get('kind')}; convert the trial to a Job first"
        )
    job = trial_spec.get("spec") or {}
    pod = (job.get("template") or {}).get("spec") or {}
    primary = template.get("primaryContainerName")
    containers = pod.get("containers") or []
    container = next((c for c in containers if c.get("name") == primary), None)
    if container is None:
        raise ImportExperimentError(
            f"{source}: spec.trialTemplate.primaryContainerName: no container named "
            f"{primary!r} in the trial Job; fix primaryContainerName"
        )
    if len(containers) > 1:
        raise ImportExperimentError(
            f"{source}: spec.trialTemplate.trialSpec: the trial Job has {len(containers)} "
            "containers; katib-nas trials run one, remove the others"
        )
    if not container.get("command"):
        raise ImportExperimentError(
            f"{source}: spec.trialTemplate.trialSpec: container {primary!r} has no command; Katib's StdOut collector "
            "replaces the entrypoint with `sh -c`, so set command explicitly"
        )
    trial: dict[str, Any] = {
        "image": _split_image(str(container.get("image", ""))),
        "command": [str(c) for c in container["command"]],
        "args": [str(a) for a in container.get("args") or []],
        "trialParameters": template.get("trialParameters") or [],
        "retain": bool(template.get("retain", False)),
    }
    for key in ("successCondition", "failureCondition"):
        if template.get(key):
            trial[key] = template[key]
    if container.get("imagePullPolicy"):
        trial["image"]["pullPolicy"] = container["imagePullPolicy"]
    for key in ("resources", "env"):
        if container.get(key):
            trial[key] = container[key]
    for key in ("nodeSelector", "tolerations", "affinity", "runtimeClassName"):
        if pod.get(key):
            trial[key] = pod[key]
    if "backoffLimit" in job:
        trial["backoffLimit"] = job["backoffLimit"]

    persistence: dict[str, Any] = {}
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod.get("volumes") or []
        if isinstance(v, dict) and v.get("persistentVolumeClaim")
    }
    for mount in container.get("volumeMounts") or []:
        if mount.get("name") in claims:
            persistence = {"existingClaim": claims[mount["name"]], "mountPath": mount["mountPath"]}
            break
    return trial, persistence


def import_experiment(path: Path, profile: str = "") -> dict[str, Any]:
    """Values (only what differs from nothing: every field the Experiment sets) for the Experiment in `path`."""
    source = str(path)
    exp = _find_experiment(path)
    spec = exp.get("spec") or {}
    if spec.get("maxTrialCount") is None:
        raise ImportExperimentError(f"{source}: spec.maxTrialCount is unset, which makes an endless search; set it")
    experiment: dict[str, Any] = {
        "name": (exp.get("metadata") or {}).get("name", ""),
        "objective": spec.get("objective") or {},
        "algorithm": spec.get("algorithm") or {},
        "parallelTrialCount": spec.get("parallelTrialCount", KATIB_DEFAULT_PARALLEL),
        "maxTrialCount": spec["maxTrialCount"],
        # Katib sets no failure limit when it is left out: all trials may fail.
        "maxFailedTrialCount": spec.get("maxFailedTrialCount", spec["maxTrialCount"]),
        "resumePolicy": spec.get("resumePolicy", "Never"),
    }
    objective = dict(experiment["objective"])
    objective.setdefault("additionalMetricNames", [])
    experiment["objective"] = objective
    experiment["algorithm"] = {
        "algorithmName": experiment["algorithm"].get("algorithmName"),
        "algorithmSettings": experiment["algorithm"].get("algorithmSettings") or [],
    }
    early = spec.get("earlyStopping")
    experiment["earlyStopping"] = (
        {
            "enabled": True,
            "algorithmName": early.get("algorithmName"),
            "algorithmSettings": early.get("algorithmSettings") or [],
        }
        if early
        else {"enabled": False}
    )
    collector = spec.get("metricsCollectorSpec") or {}
    experiment["metricsCollector"] = {"kind": (collector.get("collector") or {}).get("kind", "StdOut")}
    if collector.get("source"):
        experiment["metricsCollector"]["source"] = collector["source"]
    if (collector.get("collector") or {}).get("customCollector"):
        experiment["metricsCollector"]["customCollector"] = collector["collector"]["customCollector"]
    if spec.get("nasConfig"):
        experiment["nasConfig"] = spec["nasConfig"]
        experiment["parameters"] = []
    else:
        experiment["parameters"] = spec.get("parameters") or []

    trial, persistence = _trial(spec, source)
    values: dict[str, Any] = {"profile": profile, "experiment": experiment, "trial": trial}
    if persistence:
        values["persistence"] = persistence
    # The chart's own extras: the original Experiment had none of them.
    values["extract"] = {"enabled": False}
    values["batchInference"] = {"enabled": False}
    values["server"] = {"enabled": False}
    try:
        ChartValues.model_validate(coalesce(chart_defaults(), values))
    except ValidationError as exc:
        raise ImportExperimentError("\n".join(format_validation_error(source, exc))) from None
    return values


def dump_values(values: dict[str, Any], source: str) -> str:
    header = f"# Imported from {source} by `katib-nas import`.\n"
    return header + yaml.safe_dump(values, sort_keys=False, default_flow_style=False, width=120)
