"""The trainer Dockerfiles against the project: each copies the whole contract package and its own
trainer, installs the pins of its pyproject extra, runs as a numeric non-root user and smoke-tests its
own trainer. (No Docker engine here: the builds themselves are not run.)"""

from __future__ import annotations

import json
import re
import tomllib

import pytest
import yaml

from katib_nas_contract.flags import TRAINERS

from .conftest import ROOT

IMAGES = {
    "Dockerfile": "pytorch",
    "Dockerfile.cuda": "pytorch",
    "Dockerfile.keras": "keras",
    "Dockerfile.keras-cuda": "keras",
}
PACKAGES = {"pytorch": "katib_nas_trainer", "keras": "katib_nas_keras"}
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def instructions(name: str) -> list[str]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "images" / "trainer" / name).read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_the_image_copies_the_contract_and_its_trainer_and_runs_it_as_non_root(name: str) -> None:
    framework = IMAGES[name]
    lines = instructions(name)
    copies = [line.split()[1:] for line in lines if line.startswith("COPY")]
    assert copies == [
        ["images/contract/katib_nas_contract", "/app/katib_nas_contract"],
        [f"images/trainer/{PACKAGES[framework]}", f"/app/{PACKAGES[framework]}"],
    ]
    assert all((ROOT / source).is_dir() for source, _ in copies)
    assert [line for line in lines if line.startswith("USER")] == ["USER 1000"]
    # The image's own smoke test runs the command the chart gives its trials, interpreter included.
    command = json.loads(lines[-1].removeprefix("CMD "))
    assert command[:3] == list(TRAINERS[framework].command) and "--dry-run" in command


@pytest.mark.parametrize("name", ["Dockerfile.keras", "Dockerfile.keras-cuda"])
def test_the_keras_images_install_the_keras_extra(name: str) -> None:
    installs = [line for line in instructions(name) if line.startswith("RUN pip install")]
    assert len(installs) == 1
    packages = {p.strip('"') for p in installs[0].split()[3:]}
    wanted = {p.replace(">=2.0", "") for p in EXTRAS["keras"]}  # numpy is left unpinned in both
    if name.endswith("-cuda"):  # the same TensorFlow with its CUDA wheels instead of the CPU build
        wanted = {p for p in wanted if not p.startswith("tensorflow-cpu==")}
        version = next(p for p in EXTRAS["keras"] if p.startswith("tensorflow-cpu==")).split("==")[1]
        wanted.add(f"tensorflow[and-cuda]=={version}")
    assert packages == wanted


def built_tag(name: str) -> str:
    """The tag the Dockerfile's build line (its header comment) gives the image."""
    text = (ROOT / "images" / "trainer" / name).read_text()
    found = re.search(r"docker build -f images/trainer/\S+ -t ghcr\.io/katib-nas/[\w-]+:(\S+) \.", text)
    assert found, name
    return found[1]


def test_the_gpu_values_run_the_cuda_build_of_the_trainer() -> None:
    """A trial that holds a GPU runs the CUDA image: the default tag names the CPU build, whose PyTorch
    (or TensorFlow) sees no GPU and trains on the CPU while the GPU sits idle."""
    app_version = yaml.safe_load((ROOT / "charts" / "katib-nas" / "Chart.yaml").read_text())["appVersion"]
    assert {name: built_tag(name) for name in IMAGES} == {
        name: f"{app_version}-cuda" if name.endswith("cuda") else app_version for name in IMAGES
    }
    gpu_files = []
    for path in sorted((ROOT / "values").glob("*.yaml")):
        trial = yaml.safe_load(path.read_text()).get("trial") or {}
        if "nvidia.com/gpu" in ((trial.get("resources") or {}).get("limits") or {}):
            gpu_files.append(path.name)
            assert (trial.get("image") or {}).get("tag") == f"{app_version}-cuda", path
    assert gpu_files == ["k3s-gpu.yaml"]
