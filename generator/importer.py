"""`katib-nas import`: turn an existing Katib Experiment (such as a hand-written continuous_nas.yaml)
into a values file that renders back to an equivalent Experiment.

The importer never invents: what Katib's webhook requires and the Experiment leaves out is refused
with one line naming it, and only Katib's own defaults (its defaulting webhook) fill the rest. Every
node it reads is type-checked first, so any YAML gets a line naming the path, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from katib_nas_contract.flags import trainer_for_image

from .errors import ImportExperimentError, printable
from .models import ChartValues
from .validate import chart_defaults
from .yamlio import InputFileError, coalesce, read_yaml_file, validation_problems

# Katib's defaulting webhook fills these when an Experiment leaves them out.
KATIB_DEFAULT_PARALLEL = 3

_WORDS = {dict: "a mapping", list: "a list", str: "a string", int: "an integer", bool: "true or false"}


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    return {dict: "a mapping", list: "a list", str: "a string", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


class _Reader:
    """Reads one Experiment document; every wrong node is refused with `FILE: path: what to do`."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> ImportExperimentError:
        return ImportExperimentError(printable(f"{self.source}: {path}: {message}"))

    def get(self, node: dict[str, Any], key: str, path: str, kind: type, required: str = "") -> Any:
        """node[key] if it has type `kind`; None when absent (or refused with `required`, the fix)."""
        where = f"{path}.{key}" if path else key
        value = node.get(key)
        if value is None:
            if required:
                raise self.fail(where, f"is missing; {required}")
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(where, f"must be {_WORDS[kind]}, not {_type_name(value)}; fix its type")
        return value

    def strings(self, node: dict[str, Any], key: str, path: str) -> list[str] | None:
        """A list of strings (Kubernetes command, args): numbers would not convert to the Job Katib builds."""
        items = self.get(node, key, path, list)
        if items is None:
            return None
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise self.fail(f"{path}.{key}[{i}]", f"must be a string, not {_type_name(item)}; quote it")
        return list(items)

    def mappings(self, node: dict[str, Any], key: str, path: str) -> list[dict[str, Any]]:
        items = self.get(node, key, path, list) or []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise self.fail(f"{path}.{key}[{i}]", f"must be a mapping, not {_type_name(item)}; fix its type")
        return list(items)


def _find_experiment(path: Path) -> dict[str, Any]:
    try:
        docs = [d for d in read_yaml_file(path, "pass a Katib Experiment YAML file", documents=True) if d]
    except InputFileError as exc:
        raise ImportExperimentError(printable(f"{path}: {exc.reason}")) from None
    experiments = [d for d in docs if isinstance(d, dict) and d.get("kind") == "Experiment"]
    if len(experiments) != 1:
        raise ImportExperimentError(
            printable(f"{path}: expected one kind: Experiment document, found {len(experiments)}")
        )
    exp: dict[str, Any] = experiments[0]
    if not str(exp.get("apiVersion", "")).startswith("kubeflow.org/"):
        raise ImportExperimentError(
            printable(f"{path}: apiVersion {exp.get('apiVersion')!r} is not a Katib Experiment (kubeflow.org/v1beta1)")
        )
    return exp


def _or(value: Any, katib_default: Any) -> Any:
    return katib_default if value is None else value


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


def _trial(r: _Reader, spec: dict[str, Any], origin: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The trial values and the persistence values of the Experiment's trial template."""
    t_path = "spec.trialTemplate"
    template = r.get(
        spec,
        "trialTemplate",
        "spec",
        dict,
        "Katib's webhook requires it, add the trial Job under spec.trialTemplate.trialSpec",
    )
    if "configMap" in template:
        raise r.fail(
            f"{t_path}.configMap",
            "trial templates in ConfigMaps cannot be imported; inline the Job under trialTemplate.trialSpec",
        )
    trial_spec = r.get(template, "trialSpec", t_path, dict, "inline the trial's batch/v1 Job under it")
    if trial_spec.get("apiVersion") is None or trial_spec.get("kind") is None:
        raise r.fail(
            f"{t_path}.trialSpec",
            "has no apiVersion or kind, which Katib's webhook requires; set apiVersion: batch/v1 and kind: Job",
        )
    if trial_spec.get("apiVersion") != "batch/v1" or trial_spec.get("kind") != "Job":
        raise r.fail(
            f"{t_path}.trialSpec",
            f"only batch/v1 Job trials can be imported, not {trial_spec.get('apiVersion')}/"
            f"{trial_spec.get('kind')}; convert the trial to a Job first",
        )
    s_path = f"{t_path}.trialSpec"
    job = r.get(trial_spec, "spec", s_path, dict, "add the Job's spec.template")
    pod_template = r.get(job, "template", f"{s_path}.spec", dict, "add the Job's pod template")
    p_path = f"{s_path}.spec.template.spec"
    pod = r.get(pod_template, "spec", f"{s_path}.spec.template", dict, "add the pod spec with its container")
    primary = r.get(template, "primaryContainerName", t_path, str, "name the container that runs the trainer")
    containers = r.mappings(pod, "containers", p_path)
    index = next((i for i, c in enumerate(containers) if c.get("name") == primary), None)
    if index is None:
        raise r.fail(
            f"{t_path}.primaryContainerName",
            f"no container named {primary!r} in the trial Job; fix primaryContainerName",
        )
    if len(containers) > 1:
        raise r.fail(
            s_path, f"the trial Job has {len(containers)} containers; katib-nas trials run one, remove the others"
        )
    container = containers[index]
    c_path = f"{p_path}.containers[{index}]"
    command = r.strings(container, "command", c_path)
    if not command:
        raise r.fail(
            s_path,
            f"container {primary!r} has no command; Katib's StdOut collector replaces the entrypoint with "
            "`sh -c`, so set command explicitly",
        )
    trial_parameters = r.mappings(template, "trialParameters", t_path)
    if not trial_parameters:
        # With none listed, the chart generates one flag per search parameter instead of these args.
        raise r.fail(
            f"{t_path}.trialParameters",
            "is empty; list the trial parameters the container uses (`${trialParameters.<name>}`)",
        )
    image = r.get(container, "image", c_path, str, "set the trainer image")
    trial: dict[str, Any] = {
        "image": _split_image(image),
        "command": command,
        "args": r.strings(container, "args", c_path) or [],
        "trialParameters": trial_parameters,
        "retain": bool(r.get(template, "retain", t_path, bool)),
    }
    origin.update(
        {
            "trial.image": f"{c_path}.image",
            "trial.command": f"{c_path}.command",
            "trial.args": f"{c_path}.args",
            "trial.trialParameters": f"{t_path}.trialParameters",
            "trial.retain": f"{t_path}.retain",
        }
    )
    # A katib-nas trainer image names its framework, so `validate` checks the values against its contract.
    trainer = trainer_for_image(trial["image"]["repository"])
    if trainer is not None:
        trial["framework"] = trainer.framework
        origin["trial.framework"] = f"{c_path}.image"
    for key in ("successCondition", "failureCondition"):
        if r.get(template, key, t_path, str):
            trial[key] = template[key]
            origin[f"trial.{key}"] = f"{t_path}.{key}"
    if r.get(container, "imagePullPolicy", c_path, str):
        trial["image"]["pullPolicy"] = container["imagePullPolicy"]
        origin["trial.image.pullPolicy"] = f"{c_path}.imagePullPolicy"
    container_fields: list[tuple[str, type]] = [("resources", dict), ("env", list)]
    for key, kind in container_fields:
        if r.get(container, key, c_path, kind):
            trial[key] = container[key]
            origin[f"trial.{key}"] = f"{c_path}.{key}"
    pod_fields: list[tuple[str, type]] = [
        ("nodeSelector", dict),
        ("tolerations", list),
        ("affinity", dict),
        ("runtimeClassName", str),
    ]
    for key, kind in pod_fields:
        if r.get(pod, key, p_path, kind):
            trial[key] = pod[key]
            origin[f"trial.{key}"] = f"{p_path}.{key}"
    if r.get(job, "backoffLimit", f"{s_path}.spec", int) is not None:
        trial["backoffLimit"] = job["backoffLimit"]
        origin["trial.backoffLimit"] = f"{s_path}.spec.backoffLimit"

    claims = {}
    for i, volume in enumerate(r.mappings(pod, "volumes", p_path)):
        claim = r.get(volume, "persistentVolumeClaim", f"{p_path}.volumes[{i}]", dict)
        if claim is not None:
            where = f"{p_path}.volumes[{i}]"
            name = r.get(volume, "name", where, str, "name the volume")
            claims[name] = r.get(claim, "claimName", f"{where}.persistentVolumeClaim", str, "name the claim")
    persistence: dict[str, Any] = {}
    for i, mount in enumerate(r.mappings(container, "volumeMounts", c_path)):
        where = f"{c_path}.volumeMounts[{i}]"
        name = r.get(mount, "name", where, str, "name the volume it mounts")
        if name in claims:
            mount_path = r.get(mount, "mountPath", where, str, "set where the volume is mounted")
            persistence = {"existingClaim": claims[name], "mountPath": mount_path}
            origin["persistence.mountPath"] = f"{where}.mountPath"
            break
    return trial, persistence


def _collector(r: _Reader, spec: dict[str, Any], origin: dict[str, str]) -> dict[str, Any]:
    m_path = "spec.metricsCollectorSpec"
    collector_spec = r.get(spec, "metricsCollectorSpec", "spec", dict) or {}
    collector = r.get(collector_spec, "collector", m_path, dict)
    if collector is None:  # Katib's defaulting webhook: no collector is StdOut
        kind = "StdOut"
    else:
        # A collector without a kind is not defaulted: Katib's webhook refuses it.
        kind = r.get(collector, "kind", f"{m_path}.collector", str, "name the collector, such as StdOut or File")
    out: dict[str, Any] = {"kind": kind}
    origin["experiment.metricsCollector.kind"] = f"{m_path}.collector.kind"
    source = r.get(collector_spec, "source", m_path, dict)
    if source:
        out["source"] = source
        origin["experiment.metricsCollector.source"] = f"{m_path}.source"
    custom = r.get(collector or {}, "customCollector", f"{m_path}.collector", dict)
    if custom:
        out["customCollector"] = custom
        origin["experiment.metricsCollector.customCollector"] = f"{m_path}.collector.customCollector"
    return out


def _experiment(r: _Reader, exp: dict[str, Any], origin: dict[str, str]) -> dict[str, Any]:
    metadata = r.get(exp, "metadata", "", dict, "add metadata.name") or {}
    name = r.get(metadata, "name", "metadata", str, "name the Experiment")
    origin["experiment.name"] = "metadata.name"
    spec = r.get(exp, "spec", "", dict, "add the Experiment's spec")
    max_trials = r.get(spec, "maxTrialCount", "spec", int, "an unset maxTrialCount makes an endless search; set it")
    objective = r.get(spec, "objective", "spec", dict, "Katib's webhook requires it, add type and objectiveMetricName")
    for key, fix in (
        ("type", "Katib's webhook requires it, set minimize or maximize"),
        ("objectiveMetricName", "Katib's webhook requires it, name the metric the search optimises"),
    ):
        r.get(objective, key, "spec.objective", str, fix)
    algorithm = r.get(spec, "algorithm", "spec", dict, "Katib's webhook requires it, add algorithmName")
    algorithm_name = r.get(
        algorithm, "algorithmName", "spec.algorithm", str, "Katib's webhook requires it, name the algorithm"
    )
    experiment: dict[str, Any] = {
        "name": name,
        # Katib records no additional metrics when the list is left out (the chart's default is ["loss"]).
        "objective": _with_katib_strategies(
            {**objective, "additionalMetricNames": _or(objective.get("additionalMetricNames"), [])}
        ),
        "algorithm": {
            "algorithmName": algorithm_name,
            "algorithmSettings": r.get(algorithm, "algorithmSettings", "spec.algorithm", list) or [],
        },
        "parallelTrialCount": _or(r.get(spec, "parallelTrialCount", "spec", int), KATIB_DEFAULT_PARALLEL),
        "maxTrialCount": max_trials,
        # Katib sets no failure limit when it is left out: all trials may fail.
        "maxFailedTrialCount": _or(r.get(spec, "maxFailedTrialCount", "spec", int), max_trials),
        "resumePolicy": r.get(spec, "resumePolicy", "spec", str) or "Never",
    }
    for key in ("objective", "algorithm", "parallelTrialCount", "maxTrialCount", "maxFailedTrialCount", "resumePolicy"):
        origin[f"experiment.{key}"] = f"spec.{key}"
    early = r.get(spec, "earlyStopping", "spec", dict)
    if early:
        experiment["earlyStopping"] = {
            "enabled": True,
            "algorithmName": r.get(
                early, "algorithmName", "spec.earlyStopping", str, "Katib's webhook requires it, name the algorithm"
            ),
            "algorithmSettings": r.get(early, "algorithmSettings", "spec.earlyStopping", list) or [],
        }
        origin["experiment.earlyStopping"] = "spec.earlyStopping"
    else:
        experiment["earlyStopping"] = {"enabled": False}
    experiment["metricsCollector"] = _collector(r, spec, origin)
    parameters = r.get(spec, "parameters", "spec", list) or []
    nas_config = r.get(spec, "nasConfig", "spec", dict)
    if parameters and nas_config:
        raise r.fail("spec.nasConfig", "is set together with spec.parameters; Katib accepts only one, remove one")
    experiment["parameters"] = parameters
    origin["experiment.parameters"] = "spec.parameters"
    if nas_config:
        experiment["nasConfig"] = nas_config
        origin["experiment.nasConfig"] = "spec.nasConfig"
    return experiment


def _with_katib_strategies(objective: dict[str, Any]) -> dict[str, Any]:
    """The objective with the metricStrategies Katib's defaulting webhook gives the metrics it leaves
    out (experiment_defaults.go setDefaultObjective: the objective type's direction, for the objective
    and the additional metrics alike), written out so the chart's own defaults do not apply."""
    strategies = _or(objective.get("metricStrategies"), [])
    additional = objective.get("additionalMetricNames")
    names = [objective.get("objectiveMetricName"), *(additional if isinstance(additional, list) else [])]
    shapes_ok = isinstance(strategies, list) and all(isinstance(s, dict) for s in strategies)
    if not (shapes_ok and isinstance(additional, list) and all(isinstance(n, str) for n in names)):
        return objective  # the model refuses these, naming the path
    given = {s.get("name") for s in strategies if isinstance(s.get("name"), str)}
    value = {"minimize": "min", "maximize": "max"}.get(str(objective.get("type")), "latest")
    added = [{"name": n, "value": value} for n in dict.fromkeys(names) if n not in given]
    return {**objective, "metricStrategies": [*strategies, *added]}


def _spec_path(path: str, origin: dict[str, str]) -> str:
    """The Experiment path a values path came from (the longest recorded prefix)."""
    for prefix in sorted(origin, key=len, reverse=True):
        if path == prefix or path.startswith((f"{prefix}.", f"{prefix}[")):
            return origin[prefix] + path[len(prefix) :]
    return path


def import_experiment(path: Path, profile: str = "") -> dict[str, Any]:
    """Values (every field the Experiment sets, nothing it does not) for the Experiment in `path`."""
    source = str(path)
    reader = _Reader(source)
    exp = _find_experiment(path)
    origin: dict[str, str] = {}
    experiment = _experiment(reader, exp, origin)
    trial, persistence = _trial(reader, exp["spec"], origin)
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
        lines = [
            printable(f"{source}: {_spec_path(p.path, origin)}: {p.message}") for p in validation_problems(source, exc)
        ]
        raise ImportExperimentError("\n".join(lines)) from None
    return values


def dump_values(values: dict[str, Any], source: str) -> str:
    header = f"# Imported from {source} by `katib-nas import`.\n"
    return header + yaml.safe_dump(values, sort_keys=False, default_flow_style=False, width=120)
