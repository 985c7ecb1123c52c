"""The trial program, run as Katib runs it: a real process training on scikit-learn's digits."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from katib_nas_contract.flags import METRICS
from katib_nas_trainer.data import load_digits
from katib_nas_trainer.model import build_model

# Katib's default StdOut filter (pkg/metricscollector/v1beta1/common/const.go, DefaultFilter).
KATIB_FILTER = re.compile(r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)")
PROG = [sys.executable, "-m", "katib_nas_trainer"]
FAST = ["--units=64", "--num-layers=1", "--batch-size=64", "--patience=50"]


def trainer(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(PROG + args, capture_output=True, text=True, env=env, timeout=300, **kwargs)


def katib_metrics(stdout: str) -> list[dict[str, float]]:
    """Parse stdout the way Katib's StdOut collector does: every name=value pair on every line."""
    return [{m[0]: float(m[1]) for m in KATIB_FILTER.findall(line)} for line in stdout.splitlines() if "=" in line]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    root = tmp_path_factory.mktemp("models")
    proc = trainer(
        [
            "--output-dir",
            str(root),
            "--experiment",
            "exp",
            "--trial-name",
            "exp-abc123",
            "--epochs=8",
            "--metrics-file",
            str(root / "metrics.log"),
            *FAST,
        ]
    )
    assert proc.returncode == 0, proc.stderr
    return proc, root / "exp" / "exp-abc123"


def test_metrics_parse_with_katibs_stdout_filter_and_accuracy_rises(
    trained: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    proc, _ = trained
    lines = katib_metrics(proc.stdout)
    assert [line["epoch"] for line in lines] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert all(set(line) == set(METRICS) for line in lines)
    assert max(line["accuracy"] for line in lines[4:]) > lines[0]["accuracy"] + 0.1
    assert max(line["accuracy"] for line in lines) > 0.9


def test_metrics_file_holds_the_same_lines(trained: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    proc, record = trained
    assert (record.parent.parent / "metrics.log").read_text() == proc.stdout


def test_record_is_complete(trained: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _, record = trained
    assert sorted(p.name for p in record.iterdir()) == [
        "COMPLETE",
        "checkpoint.pt",
        "curve.json",
        "metrics.json",
        "model.onnx",
        "params.json",
        "status.json",
        "weights.pt",
    ]
    status = json.loads((record / "status.json").read_text())
    metrics = json.loads((record / "metrics.json").read_text())
    curve = json.loads((record / "curve.json").read_text())
    params = json.loads((record / "params.json").read_text())
    assert status == {"state": "completed", "epoch": 8}
    assert len(curve) == 8 and metrics["ended"] == "completed"
    assert metrics["accuracy"] == max(p["accuracy"] for p in curve)
    assert params["params"]["units"] == 64 and params["dataset"] == "digits"
    assert metrics["input_shape"] == [-1, 1, 8, 8] and metrics["classes"] == 10


def test_onnx_model_agrees_with_pytorch(trained: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _, record = trained
    params = json.loads((record / "params.json").read_text())["params"]
    data = load_digits()
    model = build_model(params, data.shape, data.classes, data.x_train)
    model.load_state_dict(torch.load(record / "weights.pt"))
    model.eval()
    with torch.no_grad():
        expected = model(data.x_test).numpy()
    session = ort.InferenceSession(str(record / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": data.x_test.numpy()})[0]
    assert np.abs(got - expected).max() < 1e-4
    assert (got.argmax(1) == expected.argmax(1)).all()
    accuracy = float((got.argmax(1) == data.y_test.numpy()).mean())
    assert accuracy == pytest.approx(json.loads((record / "metrics.json").read_text())["test_accuracy"])


def test_rerun_of_a_complete_trial_reports_and_exits(trained: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    proc, record = trained
    again = trainer(
        [
            "--output-dir",
            str(record.parent.parent),
            "--experiment",
            "exp",
            "--trial-name",
            "exp-abc123",
            "--epochs=8",
            *FAST,
        ]
    )
    assert again.returncode == 0
    assert "already complete" in again.stderr
    assert katib_metrics(again.stdout)[-1]["accuracy"] == max(m["accuracy"] for m in katib_metrics(proc.stdout))


def test_same_seed_same_curve(tmp_path: Path) -> None:
    runs = [trainer(["--output-dir", str(tmp_path / str(i)), "--epochs=3", "--seed=7", *FAST]) for i in range(2)]
    assert runs[0].returncode == runs[1].returncode == 0
    assert runs[0].stdout == runs[1].stdout


@pytest.fixture
def big_npz(tmp_path: Path) -> Path:
    """A data set large enough that an epoch takes a moment, so a signal lands mid-epoch."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(10, 784)).astype(np.float32)
    y = rng.integers(0, 10, 20000)
    x = centers[y] + rng.normal(scale=2.0, size=(20000, 784)).astype(np.float32)
    path = tmp_path / "big.npz"
    np.savez(path, x=x, y=y)
    return path


def _slow_trial(data: Path, output: Path) -> list[str]:
    """Arguments of a six-epoch trial on `data` whose epochs take long enough to interrupt."""
    return [
        "--dataset",
        str(data),
        "--output-dir",
        str(output),
        "--trial-name",
        "t",
        "--epochs=6",
        "--units=256",
        "--batch-size=64",
        "--patience=50",
    ]


def _run_until_epoch(args: list[str], epoch: int) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen(PROG + args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(f"epoch={epoch} "):
            return proc
    with proc:
        raise AssertionError(f"trainer ended before epoch {epoch} with {proc.wait()}")


def test_sigterm_mid_epoch_leaves_no_complete_record_and_resume_continues(tmp_path: Path, big_npz: Path) -> None:
    args = _slow_trial(big_npz, tmp_path)
    with _run_until_epoch(args, 1) as proc:
        time.sleep(0.2)  # inside epoch 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    record = tmp_path / "default" / "t"
    status = json.loads((record / "status.json").read_text())
    assert status["state"] == "terminated" and status["signal"] == "SIGTERM"
    assert not (record / "COMPLETE").exists() and not (record / "model.onnx").exists()
    done = status["epoch"]
    assert done >= 1 and len(json.loads((record / "curve.json").read_text())) == done

    resumed = trainer(args)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {record} after epoch {done}" in resumed.stderr
    epochs = [m["epoch"] for m in katib_metrics(resumed.stdout)]
    assert epochs == list(range(done + 1, 7))
    assert (record / "COMPLETE").exists()
    assert len(json.loads((record / "curve.json").read_text())) == 6


def test_sigkill_never_leaves_a_complete_looking_record(tmp_path: Path, big_npz: Path) -> None:
    args = _slow_trial(big_npz, tmp_path)
    with _run_until_epoch(args, 2) as proc:
        proc.kill()
        proc.wait(timeout=30)
    record = tmp_path / "default" / "t"
    assert not (record / "COMPLETE").exists() and not (record / "model.onnx").exists()
    for name in ("status.json", "curve.json", "params.json"):
        json.loads((record / name).read_text())  # each file is whole: written by rename
    assert torch.load(record / "checkpoint.pt", weights_only=False)["epoch"] >= 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--dropout=1.5"],
            "katib-nas-trainer: argument --dropout: --dropout=1.5 is out of range [0, 0.95] (see --help)",
        ),
        (
            ["--optimizer=lbfgs"],
            "katib-nas-trainer: argument --optimizer: --optimizer=lbfgs is not one of adam, adamw, sgd, rmsprop "
            "(see --help)",
        ),
        (["--units=12.5"], "katib-nas-trainer: argument --units: --units=12.5 is not an integer (see --help)"),
        (["--momentun=0.9"], "katib-nas-trainer: unrecognized arguments: --momentun=0.9 (see --help)"),
        (
            ["--dataset=missing.npz", "--output-dir=/nonexistent"],
            "katib-nas-trainer: data file /nonexistent/missing.npz not found; put an .npz with arrays x and y on "
            "the PVC",
        ),
    ],
    ids=["out-of-range", "bad-choice", "not-integer", "unknown-flag", "missing-file"],
)
def test_bad_flags_and_missing_data_are_one_line_exit_2(args: list[str], message: str) -> None:
    proc = trainer(args)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [message]
    assert proc.stdout == ""


def test_mnist_without_network_is_one_clear_line(tmp_path: Path) -> None:
    # A dead proxy makes the download fail at once, offline or not: the test never fetches data.
    env_proxy = {"https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
    proc = subprocess.run(
        PROG + ["--dataset=mnist", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONWARNINGS="ignore", **env_proxy),
        timeout=120,
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("katib-nas-trainer: cannot download https://ossci-datasets.s3.amazonaws.com/mnist/")
    assert line.endswith(f"with no network, copy the file into {tmp_path}/mnist or use --dataset digits")
    assert list((tmp_path / "mnist").iterdir()) == []


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    proc = trainer(["--dry-run", "--arch=cnn", "--output-dir", str(tmp_path)])
    assert proc.returncode == 0, proc.stderr
    assert len(katib_metrics(proc.stdout)) == 1
    assert "dry-run ok on cpu" in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("values", ["microk8s", "k3s-gpu"])
def test_the_chart_trial_command_is_what_the_trainer_accepts(values: str) -> None:
    """Render the profile's trial Job, fill in each parameter as Katib would (its lowest value),
    and parse the container's arguments with the trainer's own parser."""
    from katib_nas_contract.args import build_parser

    from .conftest import ROOT, by_kind, helm_template

    (experiment,) = by_kind(helm_template(ROOT / "values" / f"{values}.yaml"), "Experiment")
    spec = experiment["spec"]
    lowest = {p["name"]: p["feasibleSpace"].get("min") or p["feasibleSpace"]["list"][0] for p in spec["parameters"]}
    assignments = {
        tp["name"]: lowest.get(tp["reference"], "nas-katib-nas-x7k2p9qz")
        for tp in spec["trialTemplate"]["trialParameters"]
    }
    container = spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "katib_nas_trainer"]
    args = [
        re.sub(r"\$\{trialParameters\.(.+?)\}", lambda m: str(assignments[m.group(1)]), a) for a in container["args"]
    ]
    parsed = build_parser("katib-nas-trainer").parse_args(args)
    assert parsed.trial_name == "nas-katib-nas-x7k2p9qz" and parsed.output_dir == Path("/models")
    assert parsed.lr == float(lowest["lr"])


def _write_idx(path: Path, array: np.ndarray) -> None:
    import gzip

    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_mnist_files_already_in_the_data_dir_are_used_without_a_download(tmp_path: Path) -> None:
    """The IDX files a cluster downloads once, read back (here written locally: no network)."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 600), ("t10k", 100)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 40, (n, 28, 28))
        for row in range(2):  # class k lights up rows 2k and 2k+1
            images[np.arange(n), 2 * labels + row, :] = 255
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    env_proxy = {"https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
    proc = subprocess.run(
        PROG
        + ["--dataset=mnist", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "m"), "--epochs=2", *FAST],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONWARNINGS="ignore", **env_proxy),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(next((tmp_path / "m").glob("default/*/metrics.json")).read_text())
    assert metrics["input_shape"] == [-1, 1, 28, 28] and metrics["classes"] == 10
    assert metrics["test_accuracy"] > 0.5


def test_patience_stops_the_trial_early_and_the_record_says_so(tmp_path: Path) -> None:
    proc = trainer(
        [
            "--output-dir",
            str(tmp_path),
            "--trial-name",
            "t",
            "--epochs=40",
            "--patience=2",
            "--min-delta=0.05",
            "--units=64",
            "--num-layers=1",
        ]
    )
    assert proc.returncode == 0, proc.stderr
    record = tmp_path / "default" / "t"
    metrics = json.loads((record / "metrics.json").read_text())
    epochs = [m["epoch"] for m in katib_metrics(proc.stdout)]
    assert metrics["ended"] == "early_stopped" and epochs[-1] < 40
    assert metrics["epochs_run"] == epochs[-1] == metrics["best_epoch"] + 2
    assert json.loads((record / "status.json").read_text())["state"] == "early_stopped"
    assert (record / "COMPLETE").exists()
