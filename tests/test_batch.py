"""The batch-inference job: the best model over the digits test split or a user's file."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from katib_nas_contract.datasets import load_digits

from .conftest import copy_records, server_image_env


def batch(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "katib_nas_server", "batch", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=server_image_env())


def test_scores_the_digits_test_split_with_the_best_model(digits_records: Path, tmp_path: Path) -> None:
    experiment = copy_records(digits_records, tmp_path / "exp", best="mlp-wide")
    proc = batch(f"--experiment-dir={experiment}", "--dataset=digits", "--batch-size=50")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((experiment / "batch" / "summary.json").read_text())
    recorded = json.loads((experiment / "mlp-wide" / "metrics.json").read_text())
    # The same 359 held-out samples the trainer reported its test accuracy on, scored through onnxruntime.
    assert summary["count"] == len(load_digits().y_test) == 359
    assert summary["accuracy"] == pytest.approx(recorded["test_accuracy"], abs=1e-9)
    assert summary["trial"] == "mlp-wide" and summary["batch_size"] == 50 and summary["samples_per_second"] > 0
    with open(experiment / "batch" / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 359 and set(rows[0]) == {"index", "prediction", "confidence", "label"}
    assert np.mean([r["prediction"] == r["label"] for r in rows]) == pytest.approx(summary["accuracy"])
    assert "scored 359/359 rows" in proc.stderr and not list((experiment / "batch").glob(".*.tmp"))


def test_a_file_is_scored_row_by_row_with_or_without_labels(digits_records: Path, tmp_path: Path) -> None:
    experiment = copy_records(digits_records, tmp_path / "models" / "exp", best="mlp-small")
    x = load_digits().x_test[:100].reshape(100, 64)
    np.save(tmp_path / "models" / "rows.npy", x)
    proc = batch(f"--experiment-dir={experiment}", "--dataset=rows.npy", f"--output-dir={tmp_path / 'out'}")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["count"], summary["accuracy"], summary["trial"]) == (100, None, "mlp-small")
    assert (tmp_path / "out" / "predictions.csv").read_text().splitlines()[0] == "index,prediction,confidence"


@pytest.mark.parametrize(
    ("setup", "dataset", "message"),
    [
        (None, "missing.npz", "missing.npz not found; put an .npz (x, optional y) or .npy file there"),
        ("no-x", "data.npz", "has no array named x (found features)"),
        ("garbage", "data.npz", "is not a readable .npz or .npy file"),
        ("wrong-width", "data.npz", "samples of shape [1, 1, 10] do not fit the model's input [1, 8, 8]"),
        ("no-best", "digits", "no best.json in"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    digits_records: Path, tmp_path: Path, setup: str | None, dataset: str, message: str
) -> None:
    experiment = copy_records(digits_records, tmp_path / "exp", best=None if setup == "no-best" else "mlp-small")
    data = tmp_path / "data.npz"
    if setup == "no-x":
        np.savez(data, features=np.zeros((3, 64)))
    elif setup == "garbage":
        data.write_bytes(b"not numpy")
    elif setup == "wrong-width":
        np.savez(data, x=np.zeros((3, 10)))
    proc = batch(f"--experiment-dir={experiment}", f"--dataset={dataset}")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("batch: ") and message in proc.stderr
    assert not (experiment / "batch").exists()


def test_the_charts_batch_and_server_commands_are_what_the_server_image_accepts() -> None:
    import argparse

    from katib_nas_server import batch as batch_module
    from katib_nas_server.settings import Settings

    from .conftest import ROOT, by_kind, helm_template

    docs = helm_template(ROOT / "values" / "microk8s.yaml")
    job = next(d for d in by_kind(docs, "Job"))["spec"]["template"]["spec"]["containers"][0]
    (deployment,) = (
        d for d in by_kind(docs, "Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"] == "server"
    )
    server = deployment["spec"]["template"]["spec"]["containers"][0]
    assert job["command"][:4] == server["command"][:3] + ["batch"] == ["python", "-m", "katib_nas_server", "batch"]
    parser = argparse.ArgumentParser()
    batch_module.add_arguments(parser)
    args = parser.parse_args(job["command"][4:])
    assert (args.experiment_dir, args.dataset, args.batch_size) == (Path("/models/nas-katib-nas"), "digits", 256)
    assert server["command"][3] == "serve" and server["command"][4] == "--port=8080"
    env = {e["name"]: e["value"] for e in server["env"]}
    assert env["MODEL_DIR"] == "/models/nas-katib-nas"
    assert Settings(model_dir=Path("."), model_name=env["MODEL_NAME"]).model_name == "digits"
