"""Where a trial came from: enough to audit it and to rerun it (`katib-nas replay`).

The trainer gathers it when a trial starts and the record writes it (record.PROVENANCE) with the
other files of a fresh start. It holds what the trainer's own process knows (framework, library and
Python versions, device and threads, seed, the data set's digest, the flags that shape training
besides the parameters in params.json) and what the chart tells a trial pod through its environment
(ENV_*: chart version, digest of the values that shape trials, image reference, pod name). A local
run has no image: its versions are this machine's packages.

A container cannot read its own image digest (the downward API has no imageID), so the extraction
pod, which already reads the Experiment, reads each trial pod's status.containerStatuses[].imageID
and writes it beside (record.IMAGE, `image_doc`).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from .args import threads
from .datasets import Arrays

# The trial pod's environment, set by the chart's trial template (and the chart ones by the local runner).
ENV_CHART = "KATIB_NAS_CHART"  # <chart name>-<chart version>, as the helm.sh/chart label
ENV_VALUES = "KATIB_NAS_VALUES_SHA256"  # sha256 of the values that shape a trial (the chart's trialValues)
ENV_IMAGE = "KATIB_NAS_TRAINER_IMAGE"  # the image reference the trial template names
ENV_POD = "KATIB_NAS_POD_NAME"  # the pod's own name (downward API), for the extraction pod to look up
ENVIRONMENT = (ENV_CHART, ENV_VALUES, ENV_IMAGE, ENV_POD)

# Distributions whose versions decide a trial's numbers, per framework; the first installed name counts
# (TensorFlow is tensorflow-cpu in the CPU image, tensorflow in the CUDA one).
LIBRARIES: dict[str, dict[str, tuple[str, ...]]] = {
    "pytorch": {"torch": ("torch",)},
    "keras": {"tensorflow": ("tensorflow", "tensorflow-cpu"), "keras": ("keras",)},
}
COMMON_LIBRARIES = {name: (name,) for name in ("numpy", "scikit-learn", "onnx", "onnxruntime")}
# Trainer flags that shape training besides the search parameters, seed and data set (args.build_parser).
FLAGS = ("min-delta", "early-stopping", "es-metric", "es-goal", "es-start-step", "es-min-trials", "es-reduction-factor")
SPLITS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def versions(framework: str) -> dict[str, str]:
    """Python and the framework's libraries as installed in this process's environment."""
    found = {"python": platform.python_version()}
    for name, distributions in {**LIBRARIES.get(framework, {}), **COMMON_LIBRARIES}.items():
        for distribution in distributions:
            try:
                found[name] = importlib.metadata.version(distribution)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return found


def dataset_digest(data: Arrays) -> str:
    """sha256 over the splits a trial trains and is judged on (dtype, shape and bytes of each), so it
    covers the source file and the fixed split alike."""
    digest = hashlib.sha256()
    for name in SPLITS:
        array = np.ascontiguousarray(getattr(data, name))
        digest.update(f"{name}:{array.dtype.str}:{array.shape}\n".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _first_line_value(path: Path, key: str) -> str | None:
    try:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
    except OSError:
        return None
    return None


def device_name(kind: str) -> str:
    """The CPU model, or the GPU model(s) the NVIDIA driver shows this container."""
    if kind == "cuda":
        models = sorted(
            {m for p in Path("/proc/driver/nvidia/gpus").glob("*/information") if (m := _first_line_value(p, "Model"))}
        )
        return ", ".join(models) or "an NVIDIA GPU (/proc/driver/nvidia not readable)"
    return _first_line_value(Path("/proc/cpuinfo"), "model name") or platform.processor() or platform.machine()


def gather(args: argparse.Namespace, framework: str, device: str, data: Arrays) -> dict[str, Any]:
    """The provenance document of a trial about to start (record.PROVENANCE)."""
    env = os.environ
    chart = {"version": env[ENV_CHART], "values_sha256": env.get(ENV_VALUES)} if env.get(ENV_CHART) else None
    image = {"reference": env[ENV_IMAGE], "pod": env.get(ENV_POD)} if env.get(ENV_IMAGE) else None
    return {
        "framework": framework,
        "versions": versions(framework),
        "seed": args.seed,
        "dataset": {
            "source": args.dataset,
            "name": data.name,
            "sha256": dataset_digest(data),
            "samples": {split: len(getattr(data, f"y_{split}")) for split in ("train", "val", "test")},
        },
        "device": {"type": device, "name": device_name(device), "threads": threads(args)},
        "flags": {name: getattr(args, name.replace("-", "_")) for name in FLAGS},
        "chart": chart,
        "image": image,
        "host": platform.node(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def image_doc(pod: dict[str, Any], container: str, read_at: float) -> dict[str, Any]:
    """record.IMAGE from a trial pod as the API returns it: the image the kubelet ran for `container`
    and its digest (imageID is `repo@sha256:...` or `docker-pullable://repo@sha256:...`, or a bare
    `sha256:...` image id for an image loaded into the node without a registry)."""
    name = (pod.get("metadata") or {}).get("name")
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container and status.get("imageID"):
            image_id = str(status["imageID"])
            digest = image_id.rpartition("@")[2]
            return {
                "pod": name,
                "image": status.get("image"),
                "imageID": image_id,
                "digest": digest,
                "read_at": read_at,
            }
    return {"pod": name, "image": None, "imageID": None, "digest": None, "read_at": read_at}
