"""Shared helpers: the pinned tools from ci/install-tools.sh and real helm renders."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import settings

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "katib-nas"
TOOLS = ROOT / ".tools" / "bin"
PROFILE_VALUES = sorted((ROOT / "values").glob("*.yaml"))
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
KATIB_API = "kubeflow.org/v1beta1/Experiment"
KSERVE_API = "serving.kserve.io/v1beta1/InferenceService"


# Property-based tests: CI (CI=true) replays the same cases on every run (derandomized: each test's
# seed is a hash of the test, and no example database carries cases over), so a CI result reproduces;
# local runs draw new cases each time and keep failures in .hypothesis/ to replay them first. No
# deadline in either: a case that runs slowly on a loaded machine is no failure (timing belongs in
# bench/), and Hypothesis' default 200 ms failed test_compare's property test here under load.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True, deadline=None)
settings.register_profile("dev", print_blob=True, deadline=None)
HYPOTHESIS_PROFILE = "ci" if os.environ.get("CI", "").lower() == "true" else "dev"
settings.load_profile(HYPOTHESIS_PROFILE)


def pytest_report_header(config: pytest.Config) -> str:
    seed = config.getoption("hypothesis_seed", None)
    if HYPOTHESIS_PROFILE == "ci":
        how = "derandomized, every run draws the same cases"
    elif seed is not None:
        how = f"seed {seed}"
    else:
        how = "random seed per test (a failure prints its seed and how to reproduce it)"
    return f"katib-nas hypothesis: profile {HYPOTHESIS_PROFILE} ({how})"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/data/expected/*.yaml")


def tool(name: str) -> str:
    path = TOOLS / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `bash ci/install-tools.sh` first", pytrace=False)
    return str(path)


def tool_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{TOOLS}{os.pathsep}{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["HELM_PLUGINS"] = str(ROOT / ".tools" / "helm-plugins")
    env["HELM"] = str(TOOLS / "helm")
    return env


def run(cmd: list[str], stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=tool_env(), cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def helm_template(
    values_file: Path | None = None,
    values: dict[str, Any] | None = None,
    kube_version: str = "1.31.0",
    api_versions: tuple[str, ...] = (KATIB_API, KSERVE_API),
    release: str = "nas",
    namespace: str = "ml",
    check: bool = True,
) -> list[dict[str, Any]]:
    cmd = [tool("helm"), "template", release, str(CHART), "--namespace", namespace, "--kube-version", kube_version]
    for api in api_versions:
        cmd += ["--api-versions", api]
    if values_file is not None:
        cmd += ["--values", str(values_file)]
    if values is not None:
        cmd += ["--values", "-"]
    proc = run(cmd, stdin=json.dumps(values) if values is not None else None, check=check)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


# --- serving: real trainer records, a real uvicorn server on loopback --------------------------


def train_trial(model_root: Path, experiment: str, trial: str, *flags: str) -> Path:
    """A real trial record from the trainer on digits (a few seconds)."""
    cmd = [sys.executable, "-m", "katib_nas_trainer", "--dataset=digits", f"--output-dir={model_root}"]
    cmd += [f"--experiment={experiment}", f"--trial-name={trial}", "--patience=50", *flags]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return model_root / experiment / trial


@pytest.fixture(scope="session")
def digits_records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An experiment directory with two complete trials (`mlp-small`, `mlp-wide`) and no best.json."""
    root = tmp_path_factory.mktemp("models")
    train_trial(root, "exp", "mlp-small", "--epochs=2", "--units=32", "--num-layers=1")
    train_trial(root, "exp", "mlp-wide", "--epochs=4", "--units=128")
    return root / "exp"


def copy_records(records: Path, target: Path, best: str | None) -> Path:
    """A private copy of the records (servers and jobs write next to them), pointing best.json at `best`."""
    from katib_nas_contract.best import Best, publish

    shutil.copytree(records, target)
    if best is not None:
        publish(target, Best(best, "accuracy", 0.9, "records"))
    return target


def server_image_env(**env: str) -> dict[str, str]:
    """The environment for server-image processes: torch and onnx cannot be imported, as in the image."""
    blockers = str(ROOT / "tests" / "data" / "server-image")
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [blockers, os.environ.get("PYTHONPATH")])), **env)


def stop_process(proc: subprocess.Popen[Any], timeout: float) -> bool:
    """SIGTERM, then SIGKILL after `timeout` seconds: a test's processes never outlive it. Whether
    SIGTERM was enough."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False
    return True


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port nobody listens on, and never one handed out before in this run. The kernel may
    give two bind(0) calls in a row the same port; two servers told to use it then collide (the test
    control plane once gave Katib's webhook kube-apiserver's port: the webhook could not start, and the
    apiserver answered Katib's webhook calls)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


class Server:
    def __init__(self, proc: subprocess.Popen[str], url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def logs(self) -> str:
        return self.log.read_text(encoding="utf-8")


def wait_for(url: str, proc: subprocess.Popen[str], seconds: float = 30) -> bool:
    """Poll `url` until it answers 200; False when the process exits or time runs out first."""
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    return False


@contextlib.contextmanager
def serving(model_dir: Path, log: Path, **env: str) -> Iterator[Server]:
    """`python -m katib_nas_server serve` on a free loopback port; stopped (SIGTERM) on exit."""
    port = free_port()
    environment = server_image_env(MODEL_DIR=str(model_dir), RELOAD_INTERVAL="0.2", PYTHONWARNINGS="error", **env)
    cmd = [sys.executable, "-m", "katib_nas_server", "serve", "--host=127.0.0.1", f"--port={port}"]
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, env=environment)
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        if not wait_for(f"{server.url}/v2/health/live", proc):
            raise AssertionError(f"server did not start:\n{server.logs()}")
        yield server
    finally:
        if not stop_process(proc, 15):
            raise AssertionError(f"server did not stop within 15 s of SIGTERM:\n{server.logs()}")
    assert "Traceback" not in server.logs(), server.logs()
