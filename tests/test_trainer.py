"""The trial programs, run as Katib runs them: real processes training on scikit-learn's digits. Every
contract test runs over both implementations (PyTorch and Keras): the same flags, metric lines, record,
resume, early stopping across a mixed experiment, and an ONNX model that agrees with its framework."""

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

from katib_nas_contract.best import best_from_records
from katib_nas_contract.datasets import load_digits
from katib_nas_contract.flags import METRICS, TRAINERS
from katib_nas_contract.record import (
    CHECKPOINT,
    COMPLETE,
    CURVE,
    MODEL,
    PARAMS,
    PROVENANCE,
    SERVING_COST,
    STATUS,
    WEIGHTS,
)
from katib_nas_contract.record import METRICS as METRICS_FILE
from katib_nas_contract.serving_cost import MIN_RUNS, RUNS

# Katib's default StdOut filter (pkg/metricscollector/v1beta1/common/const.go, DefaultFilter).
KATIB_FILTER = re.compile(r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)")
FRAMEWORKS = sorted(TRAINERS)
PROG_NAMES = {"pytorch": "katib-nas-trainer", "keras": "katib-nas-keras"}
FAST = ["--units=64", "--num-layers=1", "--batch-size=64", "--patience=50"]


def command(framework: str) -> list[str]:
    """The chart's trial command for the framework, on this interpreter."""
    _, *module = TRAINERS[framework].command
    return [sys.executable, *module]


def trainer(framework: str, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(command(framework) + args, capture_output=True, text=True, env=env, timeout=300, **kwargs)


@pytest.fixture(params=FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def katib_metrics(stdout: str) -> list[dict[str, float]]:
    """Parse stdout the way Katib's StdOut collector does: every name=value pair on every line."""
    return [{m[0]: float(m[1]) for m in KATIB_FILTER.findall(line)} for line in stdout.splitlines() if "=" in line]


Trained = tuple[subprocess.CompletedProcess[str], Path, str]


@pytest.fixture(scope="module", params=FRAMEWORKS)
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    framework = str(request.param)
    root = tmp_path_factory.mktemp(f"models-{framework}")
    proc = trainer(
        framework,
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
        ],
    )
    assert proc.returncode == 0, proc.stderr
    return proc, root / "exp" / "exp-abc123", framework


def test_metrics_parse_with_katibs_stdout_filter_and_accuracy_rises(trained: Trained) -> None:
    proc, _, _ = trained
    lines = katib_metrics(proc.stdout)
    assert [line["epoch"] for line in lines] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert all(set(line) == set(METRICS) for line in lines)
    assert max(line["accuracy"] for line in lines[4:]) > lines[0]["accuracy"] + 0.1
    assert max(line["accuracy"] for line in lines) > 0.9


def test_metrics_file_holds_the_same_lines(trained: Trained) -> None:
    proc, record, _ = trained
    assert (record.parent.parent / "metrics.log").read_text() == proc.stdout


def test_record_is_complete(trained: Trained) -> None:
    _, record, framework = trained
    assert sorted(p.name for p in record.iterdir()) == sorted(
        [
            COMPLETE,
            CHECKPOINT[framework],
            CURVE,
            METRICS_FILE,
            MODEL,
            PARAMS,
            PROVENANCE,
            SERVING_COST,
            STATUS,
            WEIGHTS[framework],
        ]
    )
    status = json.loads((record / STATUS).read_text())
    metrics = json.loads((record / METRICS_FILE).read_text())
    curve = json.loads((record / CURVE).read_text())
    params = json.loads((record / PARAMS).read_text())
    assert status == {"state": "completed", "epoch": 8} and metrics["framework"] == framework
    assert len(curve) == 8 and metrics["ended"] == "completed"
    assert metrics["accuracy"] == max(p["accuracy"] for p in curve)
    assert params["params"]["units"] == 64 and params["dataset"] == "digits"
    assert metrics["input_shape"] == [-1, 1, 8, 8] and metrics["classes"] == 10


def test_serving_cost_is_measured_on_the_exported_model(trained: Trained) -> None:
    _, record, _ = trained
    cost = json.loads((record / SERVING_COST).read_text())
    assert cost["model_bytes"] == (record / MODEL).stat().st_size
    assert 0 < cost["latency_p50_ms"] <= cost["latency_p99_ms"]
    # 1,000 runs, or at least MIN_RUNS when a loaded machine makes them take longer than the time cap.
    assert MIN_RUNS <= cost["runs"] <= RUNS and cost["threads"] == 1 and cost["batch"] == 1
    # Digits MLP with one layer of 64 units: standardisation (2 x 64), 64x64 + 64 and 64x10 + 10 weights;
    # the exporters add at most three scalar constants (PyTorch a multiplier, Keras GELU's) to the graph.
    assert 4938 <= cost["parameters"] <= 4941


# The trained model's logits computed by its own framework from the weights file of its record; each
# runs in its own process, as the trainer does (argv: params JSON, weights, input .npy, output .npy).
LOGITS_SCRIPT = {
    "pytorch": """
import json, sys, numpy as np, torch
from katib_nas_contract.datasets import load_digits
from katib_nas_trainer.model import build_model
params, weights, x = json.loads(sys.argv[1]), sys.argv[2], np.load(sys.argv[3])
d = load_digits()
model = build_model(params, d.shape, d.classes, torch.from_numpy(d.x_train))
model.load_state_dict(torch.load(weights))
model.eval()
with torch.no_grad():
    np.save(sys.argv[4], model(torch.from_numpy(x)).numpy())
""",
    "keras": """
import json, sys, numpy as np
from katib_nas_contract.datasets import load_digits
from katib_nas_keras.model import build_model
params, weights, x = json.loads(sys.argv[1]), sys.argv[2], np.load(sys.argv[3])
d = load_digits()
model = build_model(params, d.shape, d.classes, d.x_train)
model.load_weights(weights)
np.save(sys.argv[4], np.asarray(model(x, training=False)))
""",
}


def framework_logits(framework: str, record: Path, x: np.ndarray, work: Path) -> np.ndarray:
    params = json.loads((record / PARAMS).read_text())["params"]
    np.save(work / "x.npy", x)
    argv = [json.dumps(params), str(record / WEIGHTS[framework]), str(work / "x.npy"), str(work / "out.npy")]
    env = dict(os.environ, PYTHONWARNINGS="ignore", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", LOGITS_SCRIPT[framework], *argv], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    out: np.ndarray = np.load(work / "out.npy")
    return out


def test_onnx_model_agrees_with_its_framework(trained: Trained, tmp_path: Path) -> None:
    _, record, framework = trained
    data = load_digits()
    expected = framework_logits(framework, record, data.x_test, tmp_path)
    session = ort.InferenceSession(str(record / MODEL), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": data.x_test})[0]
    assert np.abs(got - expected).max() < 1e-4
    assert (got.argmax(1) == expected.argmax(1)).all()
    accuracy = float((got.argmax(1) == data.y_test).mean())
    assert accuracy == pytest.approx(json.loads((record / METRICS_FILE).read_text())["test_accuracy"])


def test_rerun_of_a_complete_trial_reports_and_exits(trained: Trained) -> None:
    proc, record, framework = trained
    again = trainer(
        framework,
        [
            "--output-dir",
            str(record.parent.parent),
            "--experiment",
            "exp",
            "--trial-name",
            "exp-abc123",
            "--epochs=8",
            *FAST,
        ],
    )
    assert again.returncode == 0
    assert "already complete" in again.stderr
    assert katib_metrics(again.stdout)[-1]["accuracy"] == max(m["accuracy"] for m in katib_metrics(proc.stdout))


def test_same_seed_same_curve(framework: str, tmp_path: Path) -> None:
    args = ["--epochs=3", "--seed=7", *FAST]
    runs = [trainer(framework, ["--output-dir", str(tmp_path / str(i)), *args]) for i in range(2)]
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


def _run_until_epoch(framework: str, args: list[str], epoch: int) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen(
        command(framework) + args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(f"epoch={epoch} "):
            return proc
    with proc:
        raise AssertionError(f"trainer ended before epoch {epoch} with {proc.wait()}")


def test_sigterm_mid_epoch_leaves_no_complete_record_and_resume_continues(
    framework: str, tmp_path: Path, big_npz: Path
) -> None:
    args = _slow_trial(big_npz, tmp_path)
    with _run_until_epoch(framework, args, 1) as proc:
        time.sleep(0.2)  # inside epoch 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    record = tmp_path / "default" / "t"
    status = json.loads((record / "status.json").read_text())
    assert status["state"] == "terminated" and status["signal"] == "SIGTERM"
    assert not (record / "COMPLETE").exists() and not (record / "model.onnx").exists()
    done = status["epoch"]
    assert done >= 1 and len(json.loads((record / "curve.json").read_text())) == done

    resumed = trainer(framework, args)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {record} after epoch {done}" in resumed.stderr
    epochs = [m["epoch"] for m in katib_metrics(resumed.stdout)]
    assert epochs == list(range(done + 1, 7))
    assert (record / "COMPLETE").exists()
    # The checkpoint holds everything the run depends on (weights, optimizer, schedule, shuffling and
    # dropout generators): the interrupted and resumed trial learns exactly what an uninterrupted one does.
    straight = trainer(framework, _slow_trial(big_npz, tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr
    assert json.loads((record / "curve.json").read_text()) == json.loads(
        (tmp_path / "straight" / "default" / "t" / "curve.json").read_text()
    )


def test_sigkill_never_leaves_a_complete_looking_record(framework: str, tmp_path: Path, big_npz: Path) -> None:
    args = _slow_trial(big_npz, tmp_path)
    with _run_until_epoch(framework, args, 2) as proc:
        proc.kill()
        proc.wait(timeout=30)
    record = tmp_path / "default" / "t"
    assert not (record / "COMPLETE").exists() and not (record / "model.onnx").exists()
    for name in ("status.json", "curve.json", "params.json"):
        json.loads((record / name).read_text())  # each file is whole: written by rename
    assert (record / CHECKPOINT[framework]).stat().st_size > 0  # written by rename as well


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--dropout=1.5"],
            "{prog}: argument --dropout: --dropout=1.5 is out of range [0, 0.95] (see --help)",
        ),
        (
            ["--optimizer=lbfgs"],
            "{prog}: argument --optimizer: --optimizer=lbfgs is not one of adam, adamw, sgd, rmsprop (see --help)",
        ),
        (["--units=12.5"], "{prog}: argument --units: --units=12.5 is not an integer (see --help)"),
        (["--momentun=0.9"], "{prog}: unrecognized arguments: --momentun=0.9 (see --help)"),
        (
            ["--dataset=missing.npz", "--output-dir=/nonexistent"],
            "{prog}: data file /nonexistent/missing.npz not found; put an .npz with arrays x and y on the PVC",
        ),
    ],
    ids=["out-of-range", "bad-choice", "not-integer", "unknown-flag", "missing-file"],
)
def test_bad_flags_and_missing_data_are_one_line_exit_2(framework: str, args: list[str], message: str) -> None:
    proc = trainer(framework, args)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [message.format(prog=PROG_NAMES[framework])]
    assert proc.stdout == ""


def test_mnist_without_network_is_one_clear_line(framework: str, tmp_path: Path) -> None:
    # A dead proxy makes the download fail at once, offline or not: the test never fetches data.
    env_proxy = {"https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
    proc = subprocess.run(
        command(framework) + ["--dataset=mnist", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONWARNINGS="ignore", **env_proxy),
        timeout=120,
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"{PROG_NAMES[framework]}: cannot download https://ossci-datasets.s3.amazonaws.com/mnist/")
    assert line.endswith(f"with no network, copy the file into {tmp_path}/mnist or use --dataset digits")
    assert list((tmp_path / "mnist").iterdir()) == []


def test_dry_run_writes_nothing(framework: str, tmp_path: Path) -> None:
    proc = trainer(framework, ["--dry-run", "--arch=cnn", "--activation=gelu", "--output-dir", str(tmp_path)])
    assert proc.returncode == 0, proc.stderr
    assert len(katib_metrics(proc.stdout)) == 1
    assert "dry-run ok on cpu" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def _write_idx(path: Path, array: np.ndarray) -> None:
    import gzip

    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_mnist_files_already_in_the_data_dir_are_used_without_a_download(framework: str, tmp_path: Path) -> None:
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
        command(framework)
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


def test_patience_stops_the_trial_early_and_the_record_says_so(framework: str, tmp_path: Path) -> None:
    proc = trainer(
        framework,
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
        ],
    )
    assert proc.returncode == 0, proc.stderr
    record = tmp_path / "default" / "t"
    metrics = json.loads((record / "metrics.json").read_text())
    epochs = [m["epoch"] for m in katib_metrics(proc.stdout)]
    assert metrics["ended"] == "early_stopped" and epochs[-1] < 40
    assert metrics["epochs_run"] == epochs[-1] == metrics["best_epoch"] + 2
    assert json.loads((record / "status.json").read_text())["state"] == "early_stopped"
    assert (record / "COMPLETE").exists()


def test_early_stopping_and_the_best_model_across_a_mixed_experiment(tmp_path: Path) -> None:
    """One experiment, trials of both trainers: a weak trial of either framework is stopped by the median
    rule only because it reads the curves of the other framework's trial too (two peers are required),
    early-stopped records stay complete, and the best trial's model is served by the server's loader
    whichever framework wrote it."""
    from katib_nas_server.model import load, resolve

    common = ["--output-dir", str(tmp_path), "--experiment", "mixed", "--epochs=5", *FAST]
    for framework in FRAMEWORKS:
        proc = trainer(framework, [*common, f"--trial-name=good-{framework}", "--lr=0.01"])
        assert proc.returncode == 0, proc.stderr
    rule = ["--early-stopping=median", "--es-start-step=2", "--es-min-trials=2"]
    for framework in FRAMEWORKS:
        proc = trainer(framework, [*common, f"--trial-name=weak-{framework}", "--lr=0.00002", *rule])
        assert proc.returncode == 0, proc.stderr
        assert "stopped by the median rule after epoch 2" in proc.stderr
        metrics = json.loads((tmp_path / "mixed" / f"weak-{framework}" / METRICS_FILE).read_text())
        assert (metrics["ended"], metrics["stopped_by"], metrics["epochs_run"]) == ("early_stopped", "median", 2)
        assert metrics["framework"] == framework and (tmp_path / "mixed" / f"weak-{framework}" / COMPLETE).exists()

    best = best_from_records(tmp_path / "mixed")
    assert best is not None and best.trial.startswith("good-")
    data = load_digits()
    for framework in FRAMEWORKS:
        served = load(resolve(tmp_path / "mixed" / f"good-{framework}"))
        assert served.sample_shape == data.shape and served.classes == data.classes
        accuracy = float((served.logits(data.x_test).argmax(1) == data.y_test).mean())
        assert accuracy == pytest.approx(served.metrics["test_accuracy"]) and accuracy > 0.9
