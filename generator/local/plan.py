"""What a local trial runs: taken from the chart's own rendered Experiment, so a local trial gets
exactly the command and flags a trial pod would get on the cluster."""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from katib_nas_contract.flags import TRAINERS
from katib_nas_contract.gpu_memory import ENV as GPU_MEMORY_ENV
from katib_nas_contract.provenance import ENV_CHART, ENV_VALUES

from .. import helm
from ..checks_search import experiment_name as _experiment_name
from ..models import ChartValues
from ..validate import Report

LOCAL_ENV = (ENV_CHART, ENV_VALUES, GPU_MEMORY_ENV)  # what a local trial takes from the trial template
REFERENCE = re.compile(r"\$\{trialParameters\.([^}]+)\}")


@dataclass(frozen=True)
class Plan:
    name: str  # the Experiment's name: records go to <model root>/<name>/<trial>/
    source: str  # the values file, as messages name it
    values: ChartValues
    command: list[str]
    args: list[str]  # with ${trialParameters.X} references, as in the trial template
    references: dict[str, str]  # trialParameter name -> experiment parameter (or ${trialSpec.Name})
    mount_path: str
    # The profile's suggestionServices: which Katib service's meaning each algorithm has (samplers.py).
    services: dict[str, str] | None
    # The chart's provenance for a trial (chart version, digest of the trial values), and the trial's GPU
    # memory budget (local trials in parallel share this machine's GPU). Not the image reference or
    # pod: a local trial runs this machine's packages, which its provenance records.
    env: dict[str, str]


def experiment_name(report: Report, release: str) -> str:
    assert report.values is not None
    return _experiment_name(release, report.values)


def plan(report: Report, release: str) -> Plan:
    assert report.values is not None and report.profile is not None
    docs = helm.template(
        report.raw,
        release=release,
        namespace="default",
        kube_version=f"{report.profile.kubernetesVersion}.0",
        api_versions=[helm.KATIB_API],
    )
    experiment: dict[str, Any] = next(d for d in docs if d.get("kind") == "Experiment")
    template = experiment["spec"]["trialTemplate"]
    container = template["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    return Plan(
        name=experiment["metadata"]["name"],
        source=report.file,
        values=report.values,
        command=list(container["command"]),
        args=list(container.get("args", [])),
        references={p["name"]: p["reference"] for p in template["trialParameters"]},
        mount_path=report.values.persistence.mountPath,
        services=report.profile.suggestionServices,
        env={e["name"]: e["value"] for e in container.get("env", []) if e.get("name") in LOCAL_ENV},
    )


# The library each katib-nas trainer needs in this Python, and the package extra that installs it
# (`local` brings the PyTorch trainer only, so the main job does not download TensorFlow).
FRAMEWORK_LIBRARY = {"pytorch": ("torch", "local"), "keras": ("tensorflow", "local,keras")}


def missing_framework(p: Plan) -> str | None:
    """Why this Python cannot run the plan's katib-nas trainer, with the fix; None when it can (or
    when the command is a user's own trainer, whose needs only its image knows)."""
    module = p.command[-1] if p.command else ""
    for framework, trainer in TRAINERS.items():
        library, extra = FRAMEWORK_LIBRARY[framework]
        if module == trainer.command[-1] and importlib.util.find_spec(library) is None:
            return (
                f"the {framework} trainer needs {library}, which this Python lacks: "
                f"pip install -e '.[{extra}]' (or pip install 'katib-nas[{extra}]')"
            )
    return None


def trial_argv(p: Plan, params: dict[str, str], trial: str, model_root: Path) -> list[str]:
    """The trial's command line: parameters substituted as Katib would, the PVC's mount path mapped
    to the local model root, and the image's `python` to this interpreter."""

    def value(match: re.Match[str]) -> str:
        reference = p.references[match.group(1)]
        return trial if reference == "${trialSpec.Name}" else params[reference]

    command = [sys.executable if i == 0 and c in ("python", "python3") else c for i, c in enumerate(p.command)]
    args = [REFERENCE.sub(value, a) for a in p.args]
    if p.values.experiment.metricsCollector.kind in SHELL_COLLECTORS:
        args = [word for a in args for word in _shell_words(a)]
    return command + [a.replace(f"={p.mount_path}", f"={model_root}") for a in args]


# Katib's collectors that run the trial command through `sh -c` (pkg/webhook/v1beta1/pod/const.go
# NeedWrapWorkerMetricsCollectorList): there the shell removes the quotes a trial argument carries
# (the chart's, or the user's own, as in Katib's NAS examples), so a local trial does the same.
SHELL_COLLECTORS = ("StdOut", "File", "TensorFlowEvent")


def _shell_words(arg: str) -> list[str]:
    try:
        return shlex.split(arg)
    except ValueError:  # unbalanced quotes: the shell on the cluster would fail the trial; pass it as is
        return [arg]
