"""`python -m katib_nas_server batch`: score a data set with the best model, in batches, and write
predictions.csv and summary.json next to the trial records (summary.json last, both atomic)."""

from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from katib_nas_contract.datasets import IDX_SOURCES, DataError, as_samples, load
from katib_nas_contract.files import atomic_write

from .model import LoadedModel, ModelNotFound, resolve, softmax
from .model import load as load_model


class BatchError(Exception):
    """A mistake in the batch job's input; one line, exit 2."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment-dir", type=Path, required=True, help="holds best.json and the trial records")
    parser.add_argument(
        "--dataset",
        default="digits",
        help="digits, mnist or fashion-mnist (their held-out test split), or an .npz (x, optional y) or "
        ".npy (x) file, relative to the model root; every row of a file is scored",
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--output-dir", type=Path, help="default: <experiment-dir>/batch")
    parser.add_argument("--data-dir", type=Path, help="MNIST cache (default: <model root>/.datasets, as the trainer)")


def read_data(dataset: str, model_root: Path, data_dir: Path) -> tuple[np.ndarray, np.ndarray | None]:
    if dataset == "digits" or dataset in IDX_SOURCES:
        arrays = load(dataset, data_dir, model_root)
        return arrays.x_test, arrays.y_test
    path = Path(dataset) if Path(dataset).is_absolute() else model_root / dataset
    if not path.is_file():
        raise BatchError(f"--dataset {dataset}: {path} not found; put an .npz (x, optional y) or .npy file there")
    try:
        if path.suffix == ".npy":
            return as_samples(np.load(path, allow_pickle=False)), None
        with np.load(path, allow_pickle=False) as npz:
            if "x" not in npz.files:
                raise BatchError(f"--dataset {dataset}: {path} has no array named x (found {', '.join(npz.files)})")
            labels = np.asarray(npz["y"], dtype=np.int64) if "y" in npz.files else None
            return as_samples(npz["x"]), labels
    except (OSError, ValueError) as exc:
        raise BatchError(f"--dataset {dataset}: {path} is not a readable .npz or .npy file ({exc})") from None


def fit(model: LoadedModel, x: np.ndarray) -> np.ndarray:
    """The samples in the model's (N, C, H, W), or BatchError; checked before any work starts."""
    if x.shape[1:] != model.sample_shape:
        if int(np.prod(x.shape[1:])) != model.features:
            raise BatchError(
                f"samples of shape {list(x.shape[1:])} do not fit the model's input {list(model.sample_shape)}"
            )
        x = x.reshape(len(x), *model.sample_shape)
    if not np.isfinite(x).all():
        raise BatchError("the data set contains NaN or infinity")
    return x


def score(
    model: LoadedModel, x: np.ndarray, batch_size: int, log: Callable[[str], None]
) -> tuple[np.ndarray, np.ndarray, float]:
    """Predicted classes and their probabilities for every row, and the seconds spent."""
    predictions, confidence = np.empty(len(x), np.int64), np.empty(len(x), np.float32)
    started, said = time.perf_counter(), 0
    for start in range(0, len(x), batch_size):
        probs = softmax(model.logits(np.ascontiguousarray(x[start : start + batch_size])))
        predictions[start : start + len(probs)] = probs.argmax(1)
        confidence[start : start + len(probs)] = probs.max(1)
        done = start + len(probs)
        if done * 10 // len(x) > said:  # progress every tenth
            said = done * 10 // len(x)
            log(f"scored {done}/{len(x)} rows")
    return predictions, confidence, time.perf_counter() - started


def run(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    if args.batch_size < 1:
        raise BatchError(f"--batch-size {args.batch_size}: use 1 or more")
    experiment_dir: Path = args.experiment_dir
    model_root = experiment_dir.parent
    try:
        model = load_model(resolve(experiment_dir))
        x, y = read_data(args.dataset, model_root, args.data_dir or model_root / ".datasets")
    except (ModelNotFound, DataError) as exc:
        raise BatchError(str(exc)) from None
    if len(x) == 0:
        raise BatchError(f"--dataset {args.dataset}: no rows to score")
    if y is not None and len(y) != len(x):
        raise BatchError(f"--dataset {args.dataset}: x has {len(x)} rows but y has {len(y)}")
    x = fit(model, x)
    log(f"scoring {len(x)} rows of {args.dataset} with trial {model.trial} in batches of {args.batch_size}")
    predictions, confidence, seconds = score(model, x, args.batch_size, log)

    out = args.output_dir or experiment_dir / "batch"
    table = io.StringIO()
    table.write("index,prediction,confidence" + (",label" if y is not None else "") + "\n")
    for i, (p, c) in enumerate(zip(predictions.tolist(), confidence.tolist(), strict=True)):
        table.write(f"{i},{p},{c:.6f}" + (f",{y[i]}" if y is not None else "") + "\n")
    atomic_write(out / "predictions.csv", table.getvalue().encode())
    summary: dict[str, Any] = {
        "trial": model.trial,
        "model_version": model.version,
        "dataset": args.dataset,
        "count": len(x),
        "batch_size": args.batch_size,
        "accuracy": float((predictions == y).mean()) if y is not None else None,
        "seconds": round(seconds, 6),
        "samples_per_second": round(len(x) / seconds, 1) if seconds > 0 else None,
        "predictions": "predictions.csv",
        "written_at": time.time(),
    }
    atomic_write(out / "summary.json", (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())
    accuracy = f", accuracy {summary['accuracy']:.4f}" if y is not None else ""
    log(
        f"wrote {out}/predictions.csv and summary.json: {len(x)} rows{accuracy}, {summary['samples_per_second']} rows/s"
    )
    return summary
