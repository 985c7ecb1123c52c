"""More trials per GPU: the NVIDIA device plugin's time-slicing in cluster profiles. `profile detect` reads
it (the plugin's config files, gpu-feature-discovery's labels), `validate` counts trials per GPU from it
and checks each trial's GPU memory budget against the card's share, and the trainers cap their own
memory to that budget, an out-of-memory trial ending with one line."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from kubernetes import client

from generator.detect import profile_from_cluster
from generator.device_plugin import parse_config, plugin_configs
from generator.models import ClusterProfile
from generator.profiles import dump_profile, load_profile
from generator.validate import validate_data, validate_file
from katib_nas_contract import gpu_memory
from katib_nas_contract.flags import TRAINERS
from katib_nas_contract.record import CHECKPOINT, STATUS

from .conftest import ROOT

K3S_VALUES = yaml.safe_load((ROOT / "values" / "k3s-gpu.yaml").read_text())
MIB = 2**20
PROGS = {"pytorch": "katib-nas-trainer", "keras": "katib-nas-keras"}


def sliced_profile(replicas: int, memory: str | None = "8Gi", fail_over_one: bool = False) -> ClusterProfile:
    """The k3s-gpu profile with its workers' GPUs time-sliced `replicas` ways."""
    profile = load_profile("k3s-gpu").model_dump()
    worker = profile["nodes"][1]
    worker.update(gpuReplicas=replicas, gpuMemory=memory, gpuFailRequestsGreaterThanOne=fail_over_one)
    return ClusterProfile.model_validate(profile)


def k3s_values(**trial: Any) -> dict[str, Any]:
    values: dict[str, Any] = copy.deepcopy(K3S_VALUES)
    values["experiment"]["parallelTrialCount"] = 8
    for key, value in trial.items():
        if value is None:
            values["trial"].pop(key, None)
        else:
            values["trial"][key] = value
    return values


def findings(values: dict[str, Any], profile: ClusterProfile) -> tuple[list[tuple[str, str, bool]], int | None]:
    report = validate_data(values, "values.yaml", profile=profile)
    return [(p.path, p.message, p.warning) for p in report.problems], report.trials_at_once


# --- validate --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("replicas", "fit"), [(1, 2), (2, 4), (4, 8)])
def test_replicas_multiply_the_trials_that_run_at_once(replicas: int, fit: int) -> None:
    """values/k3s-gpu.yaml on the talk's cluster: two trials with whole GPUs, four and eight time-sliced."""
    problems, at_once = findings(k3s_values(), sliced_profile(replicas))
    assert at_once == fit
    assert [p for p in problems if not p[2]] == []


def test_a_budget_over_the_share_is_one_error_naming_the_share() -> None:
    problems, _ = findings(k3s_values(gpuMemoryMiB=3000), sliced_profile(4))
    assert (
        "trial.gpuMemoryMiB",
        "3000 MiB per trial but node group gpu-worker of profile k3s-gpu has 8192 MiB GPUs, time-sliced 4 ways: "
        "2048 MiB each; set it to at most 2048, or lower the device plugin's replicas",
        False,
    ) in problems


def test_sliced_gpus_without_a_budget_warn() -> None:
    problems, _ = findings(k3s_values(gpuMemoryMiB=None), sliced_profile(2))
    assert (
        "trial.gpuMemoryMiB",
        "unset while node group gpu-worker of profile k3s-gpu shares each GPU 2 ways: nothing divides a card's "
        "memory between its trials, so one can take it all and fail the others out of memory; set it to at most 4096",
        True,
    ) in problems
    whole, _ = findings(k3s_values(gpuMemoryMiB=None), sliced_profile(1))
    assert not [p for p in whole if p[0] == "trial.gpuMemoryMiB"]


def test_a_budget_is_unchecked_where_the_profile_does_not_give_the_gpu_memory() -> None:
    problems, _ = findings(k3s_values(), sliced_profile(4, memory=None))
    assert [p for p in problems if p[0] == "trial.gpuMemoryMiB"] == [
        (
            "trial.gpuMemoryMiB",
            "cannot be checked: node group gpu-worker of profile k3s-gpu does not give its GPUs' memory; set "
            "gpuMemory in the profile (`katib-nas profile detect` reads gpu-feature-discovery's nvidia.com/gpu.memory "
            "label)",
            True,
        )
    ]


@pytest.mark.parametrize("fail_over_one", [True, False])
def test_more_than_one_sliced_gpu_per_trial(fail_over_one: bool) -> None:
    """With failRequestsGreaterThanOne the plugin refuses the pod (an error); without, two slices may be one
    card (a warning)."""
    gpus = {"nvidia.com/gpu": 2}
    resources = {"requests": {**K3S_VALUES["trial"]["resources"]["requests"], **gpus}}
    resources["limits"] = {**K3S_VALUES["trial"]["resources"]["limits"], **gpus}
    problems, _ = findings(k3s_values(resources=resources), sliced_profile(4, fail_over_one=fail_over_one))
    (found,) = [p for p in problems if p[0] == "trial.resources.limits.nvidia.com/gpu"]
    assert found[2] is not fail_over_one
    assert ("fail to start" in found[1]) is fail_over_one
    assert found[1].endswith("; request nvidia.com/gpu: 1")


@given(
    replicas=st.integers(1, 8),
    card_mib=st.integers(1024, 96 * 1024),
    data=st.data(),
)
def test_the_budget_fits_exactly_when_it_is_at_most_the_cards_share(
    replicas: int, card_mib: int, data: st.DataObject
) -> None:
    budget = data.draw(st.integers(1, card_mib))
    problems, _ = findings(k3s_values(gpuMemoryMiB=budget), sliced_profile(replicas, memory=f"{card_mib}Mi"))
    errors = [p for p in problems if p[0] == "trial.gpuMemoryMiB" and not p[2]]
    assert bool(errors) == (budget > card_mib // replicas)


def test_the_k3s_gpu_values_file_holds_when_gpus_are_sliced_four_ways(tmp_path: Path) -> None:
    """The shipped file as it is, on a profile file that time-slices: its 2 GiB budget is a quarter card."""
    (tmp_path / "sliced.yaml").write_text(dump_profile(sliced_profile(4)))
    values = k3s_values()
    values["profile"] = "sliced.yaml"
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    report = validate_file(tmp_path / "values.yaml")
    assert report.problems == [] and report.trials_at_once == 8


# --- profile detect --------------------------------------------------------------------------------

PLUGIN_CONFIG = """\
version: v1
flags:
  migStrategy: none
sharing:
  timeSlicing:
    renameByDefault: {rename}
    failRequestsGreaterThanOne: {fail}
    resources:
      - name: nvidia.com/gpu
        replicas: {replicas}
"""


def plugin_config(replicas: int, rename: bool = False, fail: bool = False) -> str:
    return PLUGIN_CONFIG.format(replicas=replicas, rename=str(rename).lower(), fail=str(fail).lower())


def config_map(name: str, data: dict[str, str]) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, namespace="gpu-operator"), data=data)


def gpu_node(name: str, advertised: int, labels: dict[str, str] | None = None, resource: str = "nvidia.com/gpu") -> Any:
    capacity = {"cpu": "16", "memory": "32Gi", "pods": "110", resource: str(advertised)}
    allocatable = {**capacity, "cpu": "15", "memory": "30Gi"}
    meta = client.V1ObjectMeta(name=name, labels={"nvidia.com/gpu.present": "true", **(labels or {})})
    return client.V1Node(
        metadata=meta, spec=client.V1NodeSpec(), status=client.V1NodeStatus(capacity=capacity, allocatable=allocatable)
    )


def test_detect_reads_gpu_feature_discovery_labels() -> None:
    gfd = {"nvidia.com/gpu.count": "1", "nvidia.com/gpu.memory": "7982", "nvidia.com/gpu.replicas": "4"}
    profile = profile_from_cluster("lab", [gpu_node(f"gpu-{i}", 4, gfd) for i in (1, 2)], [], [], "1.31")
    (group,) = profile.nodes
    assert (group.count, group.gpus, group.gpuMemory, group.gpuReplicas) == (2, 1, "7982Mi", 4)
    assert profile.gpuResourceName == "nvidia.com/gpu"


def test_detect_reads_the_plugin_config_where_nodes_have_no_discovery_labels() -> None:
    configs = plugin_configs([config_map("time-slicing-config", {"any": plugin_config(4)})])
    profile = profile_from_cluster("lab", [gpu_node("gpu-1", 8)], [], [], "1.31", plugin_sharing=configs)
    (group,) = profile.nodes
    assert (group.gpus, group.gpuReplicas, group.gpuMemory, group.gpuFailRequestsGreaterThanOne) == (2, 4, None, False)


def test_detect_follows_renamed_slices_and_refused_multi_gpu_requests() -> None:
    configs = plugin_configs([config_map("plugin", {"shared": plugin_config(2, rename=True, fail=True)})])
    node = gpu_node("gpu-1", 2, resource="nvidia.com/gpu.shared")
    profile = profile_from_cluster("lab", [node], [], [], "1.31", plugin_sharing=configs)
    assert profile.gpuResourceName == "nvidia.com/gpu.shared"
    (group,) = profile.nodes
    assert (group.gpus, group.gpuReplicas, group.gpuFailRequestsGreaterThanOne) == (1, 2, True)


def test_each_node_takes_the_config_its_label_names() -> None:
    data = {"whole": plugin_config(1), "quarters": plugin_config(4)}
    configs = plugin_configs([config_map("plugin", data)])
    nodes = [
        gpu_node("a", 1, {"nvidia.com/device-plugin.config": "whole"}),
        gpu_node("b", 4, {"nvidia.com/device-plugin.config": "quarters"}),
        gpu_node("c", 2),  # two configs differ and none is named: the advertised count, unshared
    ]
    profile = profile_from_cluster("lab", nodes, [], [], "1.31", plugin_sharing=configs)
    assert [(g.count, g.gpus, g.gpuReplicas) for g in profile.nodes] == [(1, 1, 1), (1, 1, 4), (1, 2, 1)]


def test_only_device_plugin_config_files_count() -> None:
    assert parse_config("runtime:\n  suggestions: []\n") is None
    assert parse_config("version: v1\nmig-configs: {}\n") is None  # mig-parted's, not the plugin's
    assert parse_config("not: [yaml") is None
    assert parse_config("version: v1\nflags: {migStrategy: none}\n") == parse_config(plugin_config(1))
    assert plugin_configs([config_map("other", {"config.yaml": "version: v2\n"}), config_map("empty", {})]) == {}


def test_an_existing_profile_means_what_it_meant() -> None:
    """Profiles written before time-slicing (no gpuReplicas) hand GPUs out whole."""
    for name in ("microk8s", "k3s-gpu"):
        assert all(g.gpuReplicas == 1 and not g.gpuFailRequestsGreaterThanOne for g in load_profile(name).nodes)


# --- the trainers' cap ------------------------------------------------------------------------------


def test_the_budget_comes_from_the_flag_else_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(gpu_memory.ENV, raising=False)
    assert gpu_memory.budget(None) is None
    monkeypatch.setenv(gpu_memory.ENV, "2048")
    assert gpu_memory.budget(None) == 2048
    assert gpu_memory.budget(512) == 512
    for bad in ("2GiB", "0", "-5", "1.5"):
        monkeypatch.setenv(gpu_memory.ENV, bad)
        with pytest.raises(ValueError, match=f"^{gpu_memory.ENV}='{bad}' is not a positive whole number of MiB"):
            gpu_memory.budget(None)


def test_the_fraction_is_the_budget_over_the_card() -> None:
    card = 8 * 1024 * MIB
    assert gpu_memory.fraction(2048, card) == 0.25
    assert gpu_memory.fraction(8192, card) == 1.0
    with pytest.raises(ValueError, match=r"^--gpu-memory-mib=8193 is more than this GPU's 8192 MiB; lower"):
        gpu_memory.fraction(8193, card)


# Each framework's exception made as the framework makes it, in a process of its own: TensorFlow and
# PyTorch imported into one process abort it (as in test_trainer, which runs Keras code the same way).
REAL_OOM = {
    "pytorch": """
import torch
from katib_nas_trainer.train import out_of_memory
error = torch.cuda.OutOfMemoryError(
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 7.79 GiB of which 1.2 GiB is "
    "free.\\nOf the allocated memory 2.00 GiB is allocated by PyTorch, and 12.00 MiB is reserved by PyTorch but "
    "unallocated. If reserved but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF")
""",
    "keras": """
import tensorflow as tf
from katib_nas_keras.cli import out_of_memory
error = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[4096,512]")
""",
}
SHOW_LINES = """
from katib_nas_contract import gpu_memory
from katib_nas_contract.flags import TRAINERS
assert isinstance(error, out_of_memory())
print(gpu_memory.out_of_memory_line(2048, error))
print(gpu_memory.out_of_memory_line(None, error))
"""


@pytest.mark.parametrize("framework", sorted(REAL_OOM))
def test_out_of_memory_is_one_line_for_each_frameworks_real_exception(framework: str) -> None:
    proc = python(REAL_OOM[framework] + SHOW_LINES)
    assert proc.returncode == 0, proc.stderr
    budgeted, unbudgeted = proc.stdout.splitlines()
    name = {"pytorch": "OutOfMemoryError", "keras": "ResourceExhaustedError"}[framework]
    assert budgeted.startswith(f"out of GPU memory within this trial's budget of 2048 MiB ({name}: ")
    assert budgeted.endswith(
        "or raise trial.gpuMemoryMiB (at most the card's memory divided by the device plugin's replicas)"
    )
    assert len(budgeted) < 400  # PyTorch's allocator statistics are cut
    assert unbudgeted.startswith(f"out of GPU memory ({name}: ") and "set trial.gpuMemoryMiB" in unbudgeted


OOM_TRIAL = """
import sys, dataclasses, torch
from katib_nas_contract import trainer_cli
from katib_nas_trainer.cli import FRAMEWORK
from katib_nas_trainer.data import from_arrays
from katib_nas_trainer.train import TorchTrainer

class Oom(TorchTrainer):
    epochs = 0

    def train_epoch(self, *args, **kwargs):
        Oom.epochs += 1
        if Oom.epochs == 2:  # the second epoch runs out of memory, as CUDA reports it
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB.")
        return super().train_epoch(*args, **kwargs)

def trainer(run, arrays, device):
    return Oom(run, from_arrays(arrays), torch.device(device))

sys.exit(trainer_cli.main(dataclasses.replace(FRAMEWORK, trainer=trainer), sys.argv[1:]))
"""


def python(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
        timeout=300,
    )


def test_an_out_of_memory_trial_fails_with_one_line_and_keeps_its_checkpoint(tmp_path: Path) -> None:
    """The PyTorch trainer's own command line and loop, its second epoch out of memory."""
    args = ["--epochs=3", "--units=16", "--num-layers=1", "--batch-size=256", "--threads=1", "--device=cpu"]
    args += [f"--output-dir={tmp_path}", "--experiment=e", "--trial-name=t"]
    proc = python(OOM_TRIAL, *args, env={gpu_memory.ENV: "1024"})
    assert proc.returncode == gpu_memory.EXIT_OUT_OF_MEMORY
    line = (
        "out of GPU memory within this trial's budget of 1024 MiB (OutOfMemoryError: CUDA out of memory. Tried to "
        "allocate 20.00 MiB.); lower batch-size or the model's size, or raise trial.gpuMemoryMiB (at most the card's "
        "memory divided by the device plugin's replicas)"
    )
    assert proc.stderr.splitlines() == [f"{PROGS['pytorch']}: {line}"]
    assert proc.stdout.count("epoch=") == 1
    record = tmp_path / "e" / "t"
    assert json.loads((record / STATUS).read_text()) == {"state": "failed", "reason": line}
    assert (record / CHECKPOINT["pytorch"]).is_file()  # epoch 1's: a rerun resumes from it


def trainer_run(framework: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The trial program as the chart runs it (TRAINERS' command), on this interpreter."""
    _, *module = TRAINERS[framework].command
    return subprocess.run(
        [sys.executable, *module, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **env},
        timeout=300,
    )


@pytest.mark.parametrize("framework", sorted(PROGS))
def test_a_bad_budget_is_one_line_and_exit_2(framework: str) -> None:
    proc = trainer_run(framework, ["--dry-run"], {gpu_memory.ENV: "lots"})
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"{PROGS[framework]}: {gpu_memory.ENV}='lots' is not a positive whole number of MiB; set trial.gpuMemoryMiB "
        "to one"
    ]
    flag = trainer_run(framework, ["--dry-run", "--gpu-memory-mib=0"], {})
    assert flag.returncode == 2 and "--gpu-memory-mib=0 is out of range [1, " in flag.stderr


def test_the_cap_is_a_no_op_on_cpu() -> None:
    proc = trainer_run("pytorch", ["--dry-run", "--device=cpu", "--threads=1"], {gpu_memory.ENV: "64"})
    assert proc.returncode == 0, proc.stderr
    assert "dry-run ok on cpu" in proc.stderr + proc.stdout


def test_local_trials_get_the_budget_a_trial_pod_gets(tmp_path: Path) -> None:
    """`katib-nas run --local` runs trials side by side on this machine's one GPU: the same cap applies."""
    from generator.local.plan import plan

    values = yaml.safe_load((ROOT / "values" / "microk8s.yaml").read_text())
    values["trial"]["gpuMemoryMiB"] = 512
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    p = plan(validate_file(tmp_path / "values.yaml"), "nas")
    assert p.env[gpu_memory.ENV] == "512"
