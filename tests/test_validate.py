"""The malformed-values table: each file gets exactly its error lines and exit code, and neither
`render` nor `install` writes or installs anything for it."""

from __future__ import annotations

import copy
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from generator.cli import main

from .conftest import ROOT, TOOLS, tool_env

BASES = {name: yaml.safe_load((ROOT / "values" / f"{name}.yaml").read_text()) for name in ("microk8s", "k3s-gpu")}
LR = {"name": "lr", "parameterType": "double", "feasibleSpace": {"min": 0.001, "max": 0.01}}
OPT = {"name": "optimizer", "parameterType": "categorical", "feasibleSpace": {"list": ["adam", "sgd"]}}
LAYERS = {"name": "num-layers", "parameterType": "int", "feasibleSpace": {"min": 1, "max": 3}}


# A trainer of the user's own: no katib-nas flag ranges, no katib-nas early stopping.
OWN_TRAINER: dict[str, Any] = {
    "trial": {"image": {"repository": "me/trainer"}, "command": ["python", "-m", "mine"]},
    "experiment": {"earlyStopping": {"enabled": False}},
}


def params(*items: dict[str, Any]) -> dict[str, Any]:
    return {"experiment": {"parameters": list(items)}}


def space(name: str, kind: str, **fs: Any) -> dict[str, Any]:
    return {"name": name, "parameterType": kind, "feasibleSpace": fs}


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge override into base; a None in the override deletes the key."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


# (id, base profile file, override, expected stderr lines with {f} for the file, exit code)
CASES: list[tuple[str, str, dict[str, Any], list[str], int]] = [
    (
        "typo",
        "microk8s",
        {"experimnt": {"maxTrialCount": 3}},
        ["{f}: experimnt: unknown key; remove it or fix its spelling"],
        2,
    ),
    (
        "wrong-type",
        "microk8s",
        {"experiment": {"maxTrialCount": "many"}},
        ["{f}: experiment.maxTrialCount: Input should be a valid integer, unable to parse string as an integer"],
        2,
    ),
    (
        "min-not-below-max",
        "microk8s",
        params(space("lr", "double", min=0.1, max=0.01)),
        ["{f}: experiment.parameters[0].feasibleSpace: min must be < max (min 0.1, max 0.01); swap or widen them"],
        2,
    ),
    (
        "step-zero",
        "microk8s",
        params(space("num-layers", "int", min=1, max=3, step=0)),
        ["{f}: experiment.parameters[0].feasibleSpace.step: 0 must be a positive number"],
        2,
    ),
    (
        "step-wider-than-range",
        "microk8s",
        params(space("num-layers", "int", min=1, max=3, step=5)),
        [
            "{f}: experiment.parameters[0].feasibleSpace.step: 5 is larger than the range 1..3; use a step of at most "
            "max - min"
        ],
        2,
    ),
    (
        "empty-list",
        "microk8s",
        params(space("optimizer", "categorical", list=[])),
        [
            "{f}: experiment.parameters[0].feasibleSpace.list: is empty; parameterType categorical needs at least one "
            "value"
        ],
        2,
    ),
    (
        "duplicate-list-values",
        "microk8s",
        params(space("optimizer", "categorical", list=["adam", "adam"])),
        ["{f}: experiment.parameters[0].feasibleSpace.list: has duplicate values ['adam']; list each value once"],
        2,
    ),
    (
        "duplicate-parameter",
        "microk8s",
        params(LR, LR),
        ["{f}: experiment.parameters[1].name: 'lr' duplicates experiment.parameters[0]; rename or remove one"],
        2,
    ),
    (
        "list-on-double",
        "microk8s",
        params(space("lr", "double", min=0.001, max=0.01, list=["0.1"])),
        [
            "{f}: experiment.parameters[0].feasibleSpace.list: is not supported for parameterType double; use min and "
            "max"
        ],
        2,
    ),
    (
        "range-on-categorical",
        "microk8s",
        params(space("optimizer", "categorical", min="1", max="2")),
        [
            "{f}: experiment.parameters[0].feasibleSpace.min: is not supported for parameterType categorical; list "
            "the values under feasibleSpace.list",
            "{f}: experiment.parameters[0].feasibleSpace.max: is not supported for parameterType categorical; list "
            "the values under feasibleSpace.list",
            "{f}: experiment.parameters[0].feasibleSpace.list: is empty; parameterType categorical needs at least one "
            "value",
        ],
        2,
    ),
    (
        "both-spaces",
        "microk8s",
        {"experiment": {"nasConfig": {"graphConfig": {"numLayers": 2}}}},
        [
            "{f}: experiment.nasConfig: is set together with experiment.parameters; Katib accepts only one, remove one of "
            "them",
            "{f}: experiment.algorithm.algorithmName: random cannot use experiment.nasConfig; use enas or darts",
            "{f}: experiment.nasConfig: the katib-nas trainer builds architectures from parameters, not enas/darts "
            "nasConfig; use your own trainer image (trial.image, command, args)",
        ],
        2,
    ),
    (
        "grid-double-without-step",
        "microk8s",
        {"experiment": {"algorithm": {"algorithmName": "grid"}, "parameters": [LR], "resumePolicy": "LongRunning"}},
        [
            "{f}: experiment.parameters[0].feasibleSpace.step: grid needs a step for double parameters; add "
            "feasibleSpace.step"
        ],
        2,
    ),
    (
        "grid-smaller-than-maxtrialcount",
        "microk8s",
        {
            "experiment": {
                "algorithm": {"algorithmName": "grid"},
                "parameters": [LAYERS, OPT],
                "resumePolicy": "LongRunning",
            }
        },
        [
            "{f}: experiment.maxTrialCount: 12 is more than the 6 points of the grid; Katib's grid service fails, set "
            "maxTrialCount to 6 or less"
        ],
        2,
    ),
    (
        "bayesian-double-min-zero",
        "microk8s",
        {"experiment": {"algorithm": {"algorithmName": "bayesianoptimization"}}},
        [
            "{f}: experiment.parameters[3].feasibleSpace.min: 0.0 must be > 0 for bayesianoptimization: Katib's skopt "
            "service samples doubles log-uniformly in older releases and fails; use a small positive min such as 1e-6"
        ],
        2,
    ),
    (
        "hyperband-without-settings",
        "microk8s",
        {"experiment": {"algorithm": {"algorithmName": "hyperband"}, "maxTrialCount": 3}},
        [
            "{f}: experiment.algorithm.algorithmSettings: hyperband needs settings r_l and resource_name (the parameter "
            "that carries the budget, such as epochs)"
        ],
        2,
    ),
    (
        "hyperband-parallelism",
        "microk8s",
        {
            "experiment": {
                "algorithm": {
                    "algorithmName": "hyperband",
                    "algorithmSettings": [{"name": "resource_name", "value": "epochs"}, {"name": "r_l", "value": "9"}],
                },
                "parameters": [LR, space("epochs", "int", min=1, max=9)],
                "maxTrialCount": 3,
            }
        },
        [
            "{f}: experiment.parallelTrialCount: hyperband with r_l=9 and eta=3 needs parallelTrialCount >= 9; raise it "
            "or lower r_l"
        ],
        2,
    ),
    (
        "hyperband-past-its-first-rung",
        "microk8s",
        {
            "experiment": {
                "algorithm": {
                    "algorithmName": "hyperband",
                    "algorithmSettings": [{"name": "resource_name", "value": "epochs"}, {"name": "r_l", "value": "3"}],
                },
                "parameters": [LR, space("epochs", "int", min=1, max=3)],
            }
        },
        [
            "{f}: warning: experiment.maxTrialCount: 12 trials, 3 at once, with hyperband: after its first 3 trials "
            "Katib's hyperband service answers a request for more than one trial with fewer, which Katib refuses and "
            "asks again forever, so the search stalls once two trials finish together; set maxTrialCount to "
            "parallelTrialCount (one rung, as Katib's hyperband example does) or choose another algorithm"
        ],
        0,
    ),
    (
        "pbt-without-settings",
        "microk8s",
        {
            "experiment": {
                "algorithm": {"algorithmName": "pbt", "algorithmSettings": [{"name": "n_population", "value": "3"}]},
                "resumePolicy": "LongRunning",
            }
        },
        ["{f}: experiment.algorithm.algorithmSettings: pbt needs settings suggestion_trial_dir, truncation_threshold"],
        2,
    ),
    (
        "cmaes-one-dimension",
        "microk8s",
        {"experiment": {"algorithm": {"algorithmName": "cmaes"}, "parameters": [LR, OPT], "resumePolicy": "Never"}},
        [
            "{f}: experiment.parameters: Katib's goptuna service runs cmaes only on two or more int or double "
            "parameters; add one or use tpe"
        ],
        2,
    ),
    (
        "tpe-unknown-setting",
        "microk8s",
        {
            "experiment": {
                "algorithm": {
                    "algorithmName": "tpe",
                    "algorithmSettings": [{"name": "n_startup_trials", "value": "6"}],
                }
            }
        },
        [
            "{f}: experiment.algorithm.algorithmSettings[0].name: Katib's hyperopt service (which serves tpe) has no "
            "setting 'n_startup_trials' and fails the Experiment; use gamma, prior_weight, n_EI_candidates, random_state"
        ],
        2,
    ),
    (
        "enas-without-nasconfig",
        "microk8s",
        {"experiment": {"algorithm": {"algorithmName": "enas"}}},
        [
            "{f}: experiment.nasConfig: enas needs a nasConfig (graphConfig and operations) instead of parameters; add "
            "experiment.nasConfig or pick an HPO algorithm"
        ],
        2,
    ),
    (
        "early-stopping-push-collector",
        "microk8s",
        {"experiment": {"metricsCollector": {"kind": "Push"}, "earlyStopping": {"algorithmName": "medianstop"}}},
        [
            "{f}: experiment.earlyStopping.enabled: Katib's medianstop works only with the StdOut and File collectors, "
            "which read metrics as they are reported, not Push; set metricsCollector.kind=StdOut or "
            "earlyStopping.enabled=false"
        ],
        2,
    ),
    (
        "early-stopping-tensorflowevent-collector",
        "microk8s",
        {
            "experiment": {
                "metricsCollector": {
                    "kind": "TensorFlowEvent",
                    "source": {"fileSystemPath": {"path": "/tmp/tfevents", "kind": "Directory"}},
                },
                "earlyStopping": {"algorithmName": "medianstop"},
            }
        },
        [
            "{f}: experiment.earlyStopping.enabled: Katib's medianstop works only with the StdOut and File collectors, "
            "which read metrics as they are reported, not TensorFlowEvent; set metricsCollector.kind=StdOut or "
            "earlyStopping.enabled=false"
        ],
        2,
    ),
    (
        "prometheus-collector",
        "microk8s",
        {"experiment": {"metricsCollector": {"kind": "PrometheusMetric"}}},
        [
            "{f}: experiment.metricsCollector.kind: Katib v0.19's katib-config has no PrometheusMetric collector (it "
            "lists StdOut, File and TensorFlowEvent), so its webhook refuses the Experiment; print name=value lines "
            "and use StdOut"
        ],
        2,
    ),
    (
        "collector-kind-not-katibs",
        "microk8s",
        {"experiment": {"metricsCollector": {"kind": "TfEvent"}}},
        [
            "{f}: experiment.metricsCollector.kind: Input should be 'StdOut', 'File', 'TensorFlowEvent', "
            "'PrometheusMetric', 'Custom' or 'Push'"
        ],
        2,
    ),
    (
        "medianstop-start-step-zero",
        "microk8s",
        {"experiment": {"earlyStopping": {"algorithmSettings": [{"name": "start_step", "value": "0"}]}}},
        ["{f}: experiment.earlyStopping.algorithmSettings[0].value: start_step must be an integer >= 1, not '0'"],
        2,
    ),
    (
        "halving-reduction-factor-one",
        "microk8s",
        {
            "experiment": {
                "earlyStopping": {
                    "algorithmName": "successive-halving",
                    "algorithmSettings": [{"name": "reduction_factor", "value": "1"}],
                }
            }
        },
        ["{f}: experiment.earlyStopping.algorithmSettings[0].value: reduction_factor must be an integer >= 2, not '1'"],
        2,
    ),
    (
        "median-has-no-reduction-factor",
        "microk8s",
        {"experiment": {"earlyStopping": {"algorithmSettings": [{"name": "reduction_factor", "value": "3"}]}}},
        [
            "{f}: experiment.earlyStopping.algorithmSettings[0].name: median has no setting 'reduction_factor'; "
            "use min_trials_required or start_step"
        ],
        2,
    ),
    (
        "shared-rule-with-another-trainer",
        "microk8s",
        {"trial": {"image": {"repository": "example.com/my-trainer"}}},
        [
            "{f}: experiment.earlyStopping.algorithmName: median is applied by the katib-nas trainer (its "
            "--early-stopping flags), not by example.com/my-trainer; use algorithmName=medianstop with your own trainer"
        ],
        2,
    ),
    (
        "objective-not-printed",
        "microk8s",
        {"experiment": {"objective": {"objectiveMetricName": "val_acc"}}},
        [
            "{f}: experiment.objective.objectiveMetricName: the katib-nas trainer never prints 'val_acc', so Katib would "
            "record no value; use one of epoch, accuracy, loss, train_accuracy, train_loss"
        ],
        2,
    ),
    (
        "objective-in-additional",
        "microk8s",
        {"experiment": {"objective": {"additionalMetricNames": ["accuracy"]}}},
        [
            "{f}: experiment.objective.additionalMetricNames: contains the objective metric 'accuracy'; Katib rejects it, "
            "remove it from the list"
        ],
        2,
    ),
    (
        "parallel-above-max",
        "microk8s",
        {"experiment": {"parallelTrialCount": 5, "maxTrialCount": 4}},
        ["{f}: experiment.parallelTrialCount: 5 is larger than maxTrialCount 4; Katib rejects it, set it to 4 or less"],
        2,
    ),
    (
        "failed-above-max",
        "microk8s",
        {"experiment": {"maxFailedTrialCount": 20}},
        [
            "{f}: experiment.maxFailedTrialCount: 20 is larger than maxTrialCount 12; Katib rejects it, set it to 12 or "
            "less"
        ],
        2,
    ),
    (
        "name-too-long",
        "microk8s",
        {"experiment": {"name": "digits-mlp-search-" + "x" * 23}},
        ["{f}: experiment.name: String should have at most 40 characters; shorten it"],
        2,
    ),
    (
        "derived-name-too-long",
        "microk8s",
        {"fullnameOverride": "nas-" + "y" * 37},
        [
            "{f}: fullnameOverride: Experiment name 'nas-" + "y" * 37 + "' has 41 characters; Katib's webhook refuses "
            "names longer than 40, set experiment.name to a shorter one"
        ],
        2,
    ),
    (
        "derived-name-starts-with-a-digit",
        "microk8s",
        {"fullnameOverride": "1nas"},
        [
            "{f}: fullnameOverride: Experiment name '1nas' must start with a lowercase letter for Katib; set experiment.name"
        ],
        2,
    ),
    (
        "file-collector-without-source",
        "microk8s",
        {"experiment": {"metricsCollector": {"kind": "File"}}},
        [
            "{f}: experiment.metricsCollector.source.fileSystemPath: the File collector needs an absolute file path with "
            "kind File"
        ],
        2,
    ),
    (
        "metrics-file-in-a-mounted-directory",
        "microk8s",
        {
            "experiment": {
                "metricsCollector": {
                    "kind": "File",
                    "source": {"fileSystemPath": {"path": "/tmp/m.log", "kind": "File", "format": "TEXT"}},
                }
            }
        },
        [
            "{f}: experiment.metricsCollector.source.fileSystemPath.path: Katib mounts its metrics emptyDir at /tmp, "
            "where the chart's /tmp emptyDir is already mounted, so the API server refuses every trial pod (duplicate "
            "mountPath); put the metrics file in a directory of its own, such as /var/log/katib/metrics.log"
        ],
        2,
    ),
    (
        "unknown-trainer-flag",
        "microk8s",
        params(LR, space("momentum2", "double", min=0.1, max=0.9)),
        [
            "{f}: experiment.parameters[1].name: the katib-nas trainer has no flag --momentum2; use one of activation, "
            "arch, augment, batch-size, channels, conv-blocks, dropout, epochs, kernel-size, lr, momentum, num-layers, optimizer, "
            "patience, pooling, units, weight-decay"
        ],
        2,
    ),
    (
        "trainer-flag-out-of-range",
        "microk8s",
        params(space("dropout", "double", min=0.1, max=1.5)),
        ["{f}: experiment.parameters[0].feasibleSpace: --dropout=1.5 is out of the trainer's range [0, 0.95]"],
        2,
    ),
    (
        "trainer-flag-bad-choice",
        "microk8s",
        params(space("optimizer", "categorical", list=["adam", "lbfgs"])),
        [
            "{f}: experiment.parameters[0].feasibleSpace: --optimizer=lbfgs is not accepted; choose from adam, adamw, sgd, "
            "rmsprop"
        ],
        2,
    ),
    (
        "trial-parameter-bad-reference",
        "microk8s",
        {
            "trial": {
                "args": ["--lr=${trialParameters.learningRate}"],
                "trialParameters": [{"name": "learningRate", "reference": "learning_rate"}],
            }
        },
        [
            "{f}: trial.trialParameters[0].reference: 'learning_rate' is not an experiment parameter; use one of "
            "['batch-size', 'dropout', 'lr', 'num-layers', 'optimizer', 'units']"
        ],
        2,
    ),
    (
        "trial-parameter-unused",
        "microk8s",
        {
            "trial": {
                "args": ["--lr=${trialParameters.lr}"],
                "trialParameters": [{"name": "lr", "reference": "lr"}, {"name": "units", "reference": "units"}],
            }
        },
        [
            "{f}: trial.trialParameters[1].name: ${{trialParameters.units}} is not used in the trial (args, env or "
            "elsewhere in the Job); Katib rejects unused trialParameters"
        ],
        2,
    ),
    (
        "trial-parameter-in-env-without-entry",
        "microk8s",
        {
            "trial": {
                "args": ["--lr=${trialParameters.lr}"],
                "trialParameters": [{"name": "lr", "reference": "lr"}],
                "env": [{"name": "UNITS", "value": "${trialParameters.units}"}],
            }
        },
        ["{f}: trial.env: ${{trialParameters.units}} has no entry in trial.trialParameters; add one"],
        2,
    ),
    (
        "trial-fits-no-node",
        "microk8s",
        {
            "trial": {
                "resources": {"requests": {"cpu": "12", "memory": "8Gi"}, "limits": {"cpu": "12", "memory": "8Gi"}}
            }
        },
        [
            "{f}: trial.resources.requests: a trial asks for 12050m CPU and 8.01Gi plus Katib's metrics-collector sidecar, "
            "but the largest node (microk8s) has 6500m CPU and 13Gi allocatable after system reserve; lower the "
            "requests"
        ],
        2,
    ),
    (
        "bad-quantity",
        "microk8s",
        {"trial": {"resources": {"requests": {"cpu": "one"}}}},
        ["{f}: trial.resources.requests.cpu: 'one' is not a Kubernetes quantity (examples: 500m, 2, 1.5Gi, 512Mi)"],
        2,
    ),
    (
        "resources-missing",
        "microk8s",
        {"server": {"resources": None}},
        [
            "{f}: server.resources: requests.cpu, requests.memory, limits.cpu, limits.memory unset; profile microk8s needs "
            "explicit requests and limits so the scheduler and this check know what a server pod takes, add them"
        ],
        2,
    ),
    (
        "gpu-on-cpu-profile",
        "microk8s",
        {"trial": {"resources": {"requests": {"nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": 1}}}},
        [
            "{f}: trial.resources.limits.nvidia.com/gpu: 1 GPU(s) requested but profile microk8s has no GPU nodes; "
            "remove the GPU request"
        ],
        2,
    ),
    (
        "more-gpus-than-a-node",
        "k3s-gpu",
        {"trial": {"resources": {"requests": {"nvidia.com/gpu": 2}, "limits": {"nvidia.com/gpu": 2}}}},
        [
            "{f}: trial.resources.limits.nvidia.com/gpu: 2 GPUs per pod but the largest node of profile k3s-gpu has 1 "
            "(GPUs cannot be shared); request at most 1"
        ],
        2,
    ),
    (
        "gpu-profile-without-gpu-request",
        "k3s-gpu",
        {"trial": {"resources": {"requests": {"nvidia.com/gpu": None}, "limits": {"nvidia.com/gpu": None}}}},
        [
            "{f}: trial.resources.limits.nvidia.com/gpu: profile k3s-gpu is a GPU cluster but trials request no GPU; add "
            "limits.nvidia.com/gpu: 1"
        ],
        2,
    ),
    (
        "gpu-budget-over-a-whole-card",
        "k3s-gpu",
        {"trial": {"gpuMemoryMiB": 9000}},
        [
            "{f}: trial.gpuMemoryMiB: 9000 MiB per trial but node group gpu-worker of profile k3s-gpu has 8192 MiB "
            "GPUs, one trial per card: 8192 MiB each; set it to at most 8192"
        ],
        2,
    ),
    (
        "gpu-budget-without-gpu",
        "microk8s",
        {"trial": {"gpuMemoryMiB": 512}},
        [
            "{f}: warning: trial.gpuMemoryMiB: 512 MiB GPU budget but profile microk8s has no GPUs, so it caps "
            "nothing; remove it"
        ],
        0,
    ),
    (
        "gpu-without-limit",
        "k3s-gpu",
        {"trial": {"resources": {"limits": {"nvidia.com/gpu": None}}}},
        [
            "{f}: trial.resources.limits.nvidia.com/gpu: GPUs must be set in limits (and requests, if given, equal to "
            "limits); set limits.nvidia.com/gpu: 1"
        ],
        2,
    ),
    (
        "gpu-without-runtime-class",
        "k3s-gpu",
        {"trial": {"runtimeClassName": ""}},
        [
            "{f}: trial.runtimeClassName: GPU trials on profile k3s-gpu need runtimeClassName 'nvidia' or they cannot see "
            "the GPU; set it"
        ],
        2,
    ),
    (
        "multi-node-readwriteonce",
        "k3s-gpu",
        {"persistence": {"accessModes": ["ReadWriteOnce"]}},
        [
            "{f}: experiment.earlyStopping.algorithmName: median has each trial read the other trials' curves from "
            "the model PVC, but trials run on 2 nodes of profile k3s-gpu and ReadWriteOnce does not let them share "
            "it; use persistence.accessModes=[ReadWriteMany] with an RWX storage class, or algorithmName=medianstop",
            "{f}: persistence.accessModes: trials and the other pods can land on 2 nodes of profile k3s-gpu "
            "(gpu-worker-1, gpu-worker-2) but ReadWriteOnce lets only one node mount the model PVC, so pods elsewhere "
            "stay Pending; use [ReadWriteMany] with an RWX storage class, or pin every pod to one node with nodeSelector",
        ],
        2,
    ),
    (
        "rwx-without-rwx-storage",
        "microk8s",
        {"persistence": {"accessModes": ["ReadWriteMany"]}},
        [
            "{f}: persistence.accessModes: ReadWriteMany is not offered by the storage of profile microk8s "
            "(ReadWriteOnce); use one of those"
        ],
        2,
    ),
    (
        "kserve-on-one-small-node",
        "microk8s",
        {"server": {"mode": "kserve"}},
        [
            "{f}: server.mode: kserve cannot run on profile microk8s: Istio, Knative Serving and KServe need about 6 CPUs "
            "and 12Gi beyond Katib and are known never to become Ready on a single small MicroK8s node; use "
            "server.mode=fastapi"
        ],
        2,
    ),
    (
        "profile-unset",
        "microk8s",
        {"profile": ""},
        ["{f}: profile: is unset; name the cluster this file is for: microk8s, k3s-gpu or a profile file"],
        2,
    ),
    (
        "profile-file-missing",
        "microk8s",
        {"profile": "profiles/lab.yaml"},
        [
            "{f}: profile: profile 'profiles/lab.yaml' is neither a built-in profile (microk8s, k3s-gpu) nor a readable "
            "UTF-8 file (looked for {d}/profiles/lab.yaml); write one with `katib-nas profile detect -o profiles/lab.yaml`"
        ],
        2,
    ),
    (
        "more-parallel-trials-than-fit",
        "microk8s",
        {"experiment": {"parallelTrialCount": 8}},
        [
            "{f}: warning: experiment.parallelTrialCount: 8 trials requested at once but profile microk8s runs only 5 (on "
            "microk8s); the others wait Pending, set parallelTrialCount to 5"
        ],
        0,
    ),
    (
        "budget-not-positive",
        "microk8s",
        {"promotion": {"budget": {"latencyP99Ms": 0}}},
        ["{f}: promotion.budget.latencyP99Ms: Input should be greater than 0"],
        2,
    ),
    (
        "budget-objective-not-in-records",
        "microk8s",
        {
            "promotion": {"budget": {"latencyP99Ms": 1}},
            "experiment": {"objective": {"objectiveMetricName": "train_loss", "type": "minimize"}},
        },
        [
            "{f}: promotion.budget: a budget promotes from the trial records, whose metrics.json holds accuracy and "
            "loss, not the objective 'train_loss'; use objectiveMetricName accuracy or loss, or unset the budget"
        ],
        2,
    ),
    (
        "budget-with-own-trainer",
        "microk8s",
        {
            "promotion": {"budget": {"modelBytes": 1000}},
            "trial": {"image": {"repository": "me/trainer"}, "command": ["python", "-m", "mine"]},
            "experiment": {"earlyStopping": {"enabled": False}},
        },
        [
            "{f}: warning: promotion.budget: the katib-nas trainers measure each model's serving cost into "
            "serving_cost.json; me/trainer must write it too (katib_nas_contract.serving_cost.write), or every trial "
            "is ruled out",
        ],
        0,
    ),
    (
        "batch-scores-another-data-set",
        "k3s-gpu",
        {"batchInference": {"dataset": "digits"}},
        [
            "{f}: batchInference.dataset: digits, but the trials train on mnist (trial.dataset): the batch Job would "
            "score digits samples with a model made for mnist; set batchInference.dataset: mnist"
        ],
        2,
    ),
    (
        "goal-not-finite",
        "microk8s",
        {"experiment": {"objective": {"goal": float("inf")}}},
        ["{f}: experiment.objective.goal: Input should be a finite number; write a number, not .inf or .nan"],
        2,
    ),
    (
        "bound-not-a-number",
        "microk8s",
        params(space("lr", "double", min=0.001, max=float("nan"))),
        [
            "{f}: experiment.parameters[0].feasibleSpace.max: Input should be a finite number; write a number, not "
            ".inf or .nan"
        ],
        2,
    ),
    (
        "bound-past-a-double",
        "microk8s",
        params(space("lr", "double", min=0.001, max=10**400)),
        [
            f"{{f}}: experiment.parameters[0].feasibleSpace.max: {10**400} is not a number",
            f"{{f}}: experiment.parameters[0].feasibleSpace: --lr={10**400} is not a number",
        ],
        2,
    ),
    (
        "early-stopping-setting-of-5000-digits",
        "microk8s",
        {"experiment": {"earlyStopping": {"algorithmSettings": [{"name": "start_step", "value": "1" * 5000}]}}},
        [
            "{f}: experiment.earlyStopping.algorithmSettings[0].value: start_step must be an integer >= 1, not "
            f"'{'1' * 5000}'"
        ],
        2,
    ),
    (
        "goptuna-bound-of-5000-digits",
        "microk8s",
        {
            "experiment": {
                "algorithm": {"algorithmName": "sobol"},
                "resumePolicy": "LongRunning",
                "parameters": [space("num-layers", "int", min="1" * 5000, max="3")],
            }
        },
        [
            f"{{f}}: experiment.parameters[0].feasibleSpace.min: '{'1' * 5000}' is not a number",
            f"{{f}}: experiment.parameters[0].feasibleSpace: --num-layers={'1' * 5000} is not an integer",
            "{f}: experiment.parameters[0].feasibleSpace.min: Katib's goptuna service needs a whole number here, not "
            f"'{'1' * 5000}'",
        ],
        2,
    ),
    (
        "grid-of-doubles-past-a-double",
        "microk8s",
        merged(
            OWN_TRAINER,
            {
                "experiment": {
                    "algorithm": {"algorithmName": "grid"},
                    "resumePolicy": "LongRunning",
                    "parameters": [space("lr", "double", min="-1e308", max="1e308", step="1")],
                }
            },
        ),
        ["{f}: experiment.parameters: Katib's grid service cannot enumerate this search space; check the steps"],
        2,
    ),
    (
        "grid-of-ints-past-sys-maxsize",
        "microk8s",
        merged(
            OWN_TRAINER,
            {
                "experiment": {
                    "algorithm": {"algorithmName": "grid"},
                    "resumePolicy": "LongRunning",
                    "parameters": [space("lr", "int", min="0", max=str(10**23))],
                }
            },
        ),
        [],
        0,
    ),
    (
        "memory-past-a-quantity",
        "microk8s",
        {"trial": {"resources": {"requests": {"memory": "1e400"}}}},
        [
            "{f}: trial.resources.requests: a trial asks for 1050m CPU and 8.59e+09Gi plus Katib's metrics-collector "
            "sidecar, but the largest node (microk8s) has 6500m CPU and 13Gi allocatable after system reserve; lower "
            "the requests"
        ],
        2,
    ),
    (
        "cpu-past-a-quantity",
        "microk8s",
        {"extract": {"resources": {"requests": {"cpu": "1e400"}}}},
        [
            "{f}: extract.resources.requests: the extraction pod asks for 9.22337e+18 CPU and 128Mi, but the largest "
            "node (microk8s) has 6500m CPU and 13Gi allocatable after system reserve; lower the requests"
        ],
        2,
    ),
]


@pytest.fixture
def helm_spy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The real helm behind a wrapper that records each call, to prove helm never ran."""
    spy = tmp_path / "spy"
    spy.mkdir()
    log = spy / "helm-calls.log"
    wrapper = spy / "helm"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {TOOLS / "helm"} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("HELM", str(wrapper))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-cluster"))
    return log


@pytest.mark.parametrize(("base", "override", "expected", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_values(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    helm_spy: Path,
    base: str,
    override: dict[str, Any],
    expected: list[str],
    code: int,
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    path = work / "values.yaml"
    path.write_text(yaml.safe_dump(merged(BASES[base], override), sort_keys=False))
    lines = [line.format(f=path, d=work) for line in expected]

    assert main(["validate", str(path)]) == code
    err = capsys.readouterr().err.splitlines()
    assert err == lines

    if code == 0:
        return
    out = work / "rendered.yaml"
    assert main(["render", str(path), "-o", str(out)]) == 2
    assert main(["install", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == lines + lines
    assert not out.exists() and not helm_spy.exists(), "nothing may be rendered or installed"
    assert sorted(p.name for p in work.iterdir()) == ["values.yaml"]


def test_table_covers_every_kind_of_check() -> None:
    assert len(CASES) >= 45
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("name", ["microk8s", "k3s-gpu"])
def test_shipped_profile_files_are_clean(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = ROOT / "values" / f"{name}.yaml"
    assert main(["validate", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.startswith(f"{path}: ok (profile {name}; ")


def test_not_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("experiment: [unclosed\n")
    assert main(["validate", str(path)]) == 2
    assert capsys.readouterr().err == f"{path}: line 2: not valid YAML (expected ',' or ']', but got '<stream end>')\n"


def test_custom_profile_relative_to_the_values_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = yaml.safe_load((ROOT / "generator" / "profiles" / "microk8s.yaml").read_text())
    profile["name"] = "lab"
    profile["nodes"][0]["cpu"] = "2"
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "lab.yaml").write_text(yaml.safe_dump(profile))
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(merged(BASES["microk8s"], {"profile": "profiles/lab.yaml"})))
    assert main(["validate", str(path)]) == 2
    assert "the largest node (microk8s) has 500m CPU" in capsys.readouterr().err


def test_each_problem_of_a_broken_profile_file_is_a_line_of_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "lab.yaml").write_text("nodes: []\nsuggestionServices: [1, 2]\n")
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(merged(BASES["microk8s"], {"profile": "lab.yaml"})))
    assert main(["validate", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert f"{path}: profile: {tmp_path / 'lab.yaml'}: suggestionServices: Input should be a valid dictionary" in lines
    assert f"{path}: profile: {tmp_path / 'lab.yaml'}: name: Field required; add it" in lines
    assert not any("\\n" in line for line in lines), lines


def test_a_profile_that_is_not_yaml_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "lab.yaml").write_text("nodes: [\n")
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(merged(BASES["microk8s"], {"profile": "lab.yaml"})))
    assert main(["validate", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"{path}: profile: {tmp_path / 'lab.yaml'}: line 2: not valid YAML "
        "(expected the node content, but found '<stream end>')\n"
    )


MICROK8S_TEXT = (ROOT / "values" / "microk8s.yaml").read_text()
APPENDED = MICROK8S_TEXT.count("\n") + 1  # the line number of text appended to it


def _values_text(tmp_path: Path, extra: str) -> Path:
    """The shipped microk8s values file with YAML text appended (written as a user writes it, which
    yaml.safe_dump of a dict cannot: unquoted dates, anchors and aliases)."""
    path = tmp_path / "values.yaml"
    path.write_text(MICROK8S_TEXT + extra)
    return path


def test_an_unquoted_date_stays_the_text_helm_sees(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # PyYAML made it a date(), which raised ValueError (day is out of range for month).
    path = _values_text(tmp_path, "nameOverride: 2021-02-30\n")
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().err == ""


def test_an_impossible_date_as_the_experiment_name_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "values.yaml"
    path.write_text("profile: microk8s\nexperiment:\n  name: 2021-02-30\n")
    assert main(["validate", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"{path}: experiment.name: '2021-02-30' is not allowed here; use lowercase letters, digits and '-', "
        "starting with a letter and ending with a letter or digit\n"
    )


def test_a_date_in_a_free_form_block_renders_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """trial.env is passed through: a date there once passed validate and crashed json.dumps in render."""
    monkeypatch.setenv("HELM", str(TOOLS / "helm"))
    text = MICROK8S_TEXT.replace("trial:\n", "trial:\n  env:\n    - name: SINCE\n      value: 2021-01-01\n", 1)
    assert text != MICROK8S_TEXT
    path = tmp_path / "values.yaml"
    path.write_text(text)
    out = tmp_path / "rendered.yaml"
    assert main(["render", str(path), "-o", str(out)]) == 0, capsys.readouterr().err
    experiment = next(d for d in yaml.safe_load_all(out.read_text()) if d and d["kind"] == "Experiment")
    container = experiment["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "SINCE", "value": "2021-01-01"} in container["env"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            f"nameOverride: {'1' * 5000}\n",
            "line {line}: a number of 5000 characters is too long to read; shorten it, or quote it if it is text",
        ),
        ("x: " + "[" * 5000 + "]" * 5000 + "\n", "nests mappings and lists more than 100 levels deep; flatten it"),
        (
            "x: " + "[" * 101 + "]" * 101 + "\n",
            "line {line}: nests mappings and lists more than 100 levels deep; flatten it",
        ),
        ("x: &loop [a, *loop]\n", "line {line}: an alias (*name) refers to the node that holds it; remove the loop"),
        ("x: !!binary //79\n", "line {line}: !!binary data that is not UTF-8 text; write the text itself"),
    ],
    ids=["int-of-5000-digits", "nested-5000-deep", "nested-101-deep", "alias-loop", "binary-not-text"],
)
def test_yaml_python_cannot_take_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, expected: str
) -> None:
    path = _values_text(tmp_path, extra)
    for command in (["validate"], ["render"], ["install"]):
        assert main([*command, str(path)]) == 2
        assert capsys.readouterr().err == f"{path}: {expected.format(line=APPENDED)}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["values.yaml"]


def test_an_alias_bomb_is_refused_at_load(tmp_path: Path) -> None:
    """Nine levels of nine-item anchors under trial.affinity expand to 387 million values: validate
    (json.dumps of the trial spec) and render hung on them. Refused at load, in a bounded time."""
    levels = ['    a0: &a0 ["x","x","x","x","x","x","x","x","x"]\n']
    levels += [f"    a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9)]
    text = MICROK8S_TEXT.replace("trial:\n", "trial:\n  affinity:\n" + "".join(levels), 1)
    path = tmp_path / "values.yaml"
    path.write_text(text)
    # Counting stops at the first anchor past 100000 values: a5, 9**6 strings.
    line = text.splitlines().index(levels[5].rstrip("\n")) + 1
    for command in ("validate", "render"):
        proc = subprocess.run(
            [sys.executable, "-m", "generator", command, str(path)],
            capture_output=True,
            text=True,
            env=tool_env(),
            cwd=ROOT,
            timeout=20,
        )
        assert proc.returncode == 2
        assert proc.stderr == (
            f"{path}: line {line}: holds more than 100000 values once its aliases (*name) are expanded; write the "
            "values out, or use fewer aliases\n"
        )


def test_the_yaml_loader_reads_values_as_go_does() -> None:
    from generator.yamlio import parse_yaml

    text = (
        "stamp: 2001-12-14t21:59:43.10-05:00\ntagged: !!timestamp 2020-01-01\nequals: =\nset: !!set {a, b}\n"
        "omap: !!omap [{a: 1}, {b: 2}]\nbinary: !!binary aGVsbG8=\n"
    )
    assert parse_yaml(text) == {
        "stamp": "2001-12-14t21:59:43.10-05:00",
        "tagged": "2020-01-01",
        "equals": "=",
        "set": {"a": None, "b": None},
        "omap": [{"a": 1}, {"b": 2}],
        "binary": "hello",
    }


PROFILE = yaml.safe_load((ROOT / "generator" / "profiles" / "microk8s.yaml").read_text())


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            {"nodes": [{"name": "n", "cpu": "eight", "memory": "16Gi"}]},
            ["nodes[0].cpu: 'eight' is not a Kubernetes quantity (examples: 500m, 2, 1.5Gi, 512Mi)"],
        ),
        (
            {"systemReserved": {"cpu": "1", "memory": "-1Gi"}},
            ["systemReserved.memory: '-1Gi' is negative; give a quantity of 0 or more, such as 500m or 1Gi"],
        ),
        (
            {"metricsCollectorRequests": {"cpu": "lots", "memory": "10Mi"}},
            ["metricsCollectorRequests.cpu: 'lots' is not a Kubernetes quantity (examples: 500m, 2, 1.5Gi, 512Mi)"],
        ),
        (
            {"kubernetesVersion": "abc"},
            ["kubernetesVersion: 'abc' is not allowed here; use the cluster's major.minor version, such as 1.31"],
        ),
        (
            {"kubernetesVersion": "1.28"},
            [
                "kubernetesVersion: 1.28 is older than Kubernetes 1.29, the oldest the chart installs on (Chart.yaml "
                "kubeVersion); upgrade the cluster to 1.29 or newer, or run the search on this machine with "
                "`katib-nas run --local`"
            ],
        ),
        (
            {"nodes": [{"name": "n", "count": 1000000, "cpu": "8", "memory": "16Gi"}]},
            ["nodes[0].count: Input should be less than or equal to 5000"],
        ),
        (
            {"nodes": [{"name": f"n{i}", "count": 3000, "cpu": "8", "memory": "16Gi"} for i in range(2)]},
            [
                "nodes: 6000 nodes in all, but Kubernetes supports clusters of up to 5000; describe the cluster the "
                "values are for"
            ],
        ),
    ],
    ids=[
        "node-cpu",
        "reserve-negative",
        "collector-cpu",
        "kubernetes-version",
        "kubernetes-too-old",
        "node-count",
        "cluster-size",
    ],
)
def test_a_profile_field_helm_or_the_checks_cannot_read_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: dict[str, Any], expected: list[str]
) -> None:
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump(merged(PROFILE, override)))
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(merged(BASES["microk8s"], {"profile": "lab.yaml"})))
    assert main(["validate", str(path)]) == 2
    profile = tmp_path / "lab.yaml"
    assert capsys.readouterr().err.splitlines() == [f"{path}: profile: {profile}: {line}" for line in expected]


def test_a_large_cluster_is_named_in_a_short_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nodes = [{"name": "node", "count": 5000, "cpu": "8", "memory": "16Gi"}]
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump(merged(PROFILE, {"nodes": nodes})))
    path = tmp_path / "values.yaml"
    values = merged(BASES["microk8s"], {"profile": "lab.yaml", "experiment": {"earlyStopping": {"enabled": False}}})
    values["server"]["replicas"] = 10**9
    path.write_text(yaml.safe_dump(values))
    started = time.monotonic()
    assert main(["validate", str(path)]) == 2
    assert time.monotonic() - started < 20
    assert capsys.readouterr().err.splitlines() == [
        f"{path}: persistence.accessModes: trials and the other pods can land on 5000 nodes of profile microk8s "
        "(node-1, node-10, node-100, node-1000, node-1001 and 4995 more) but ReadWriteOnce lets only one node mount "
        "the model PVC, so pods elsewhere stay Pending; use [ReadWriteMany] with an RWX storage class, or pin every "
        "pod to one node with nodeSelector"
    ]
