"""One trial on Keras: train, report each epoch in Katib's StdOut format, checkpoint, and publish the
record. The trial rules (metric lines, best epoch, patience, peers' early stopping, SIGTERM, final
metrics) are the contract's, shared with the PyTorch trainer."""

from __future__ import annotations

import io
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from katib_nas_contract import serving_cost
from katib_nas_contract.datasets import Arrays
from katib_nas_contract.files import atomic_write
from katib_nas_contract.record import CHECKPOINT, CURVE, METRICS, MODEL, PARAMS, WEIGHTS, TrialRecord
from katib_nas_contract.stopping import Rule
from katib_nas_contract.trial import (
    EXIT_TERMINATED,
    ONNX_TOLERANCE,
    RESUME_HINT,
    Progress,
    StopFlag,
    final_metrics,
    metric_line,
    params_doc,
    report,
    same_run,
    stopped_by_peers,
)

from .model import build_model, build_optimizer
from .onnx_export import export_onnx

FRAMEWORK = "keras"
EVAL_BATCH = 4096


@dataclass
class Run:
    params: dict[str, Any]
    seed: int
    epochs: int
    min_delta: float
    device: str
    record: TrialRecord | None
    metrics_file: Path | None = None
    curve: list[dict[str, float]] = field(default_factory=list)
    stopping: Rule = field(default_factory=Rule)


class Trainer:
    """The model, its optimizer and one compiled training step."""

    def __init__(self, run: Run, data: Arrays) -> None:
        self.model = build_model(run.params, data.shape, data.classes, data.x_train)
        self.optimizer, self.l2 = build_optimizer(run.params)
        self.optimizer.build(self.model.trainable_variables)
        self.base_lr = float(run.params["lr"])
        self.loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.step = tf.function(self._step, reduce_retracing=True)

    def _step(self, x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.model(x, training=True)
            loss = self.loss(y, logits)
        grads = tape.gradient(loss, variables)
        if self.l2:
            grads = [g + self.l2 * v for g, v in zip(grads, variables, strict=True)]
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.int64))
        return loss, correct

    def set_epoch_lr(self, epoch: int, epochs: int) -> None:
        """Cosine decay over the planned epochs, stepped per epoch like PyTorch's CosineAnnealingLR."""
        self.optimizer.learning_rate = self.base_lr * (1 + math.cos(math.pi * (epoch - 1) / epochs)) / 2

    def weights(self) -> list[np.ndarray]:
        return [np.array(v) for v in self.model.weights]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        for variable, value in zip(self.model.weights, weights, strict=True):
            variable.assign(value)


def shift(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Move each image by up to one pixel in each direction (zero fill), as the PyTorch trainer does."""
    n, c, h, w = x.shape
    if h < 4 or w < 4:
        return x
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    dy, dx = rng.integers(0, 3, size=(n,)), rng.integers(0, 3, size=(n,))
    rows = (np.arange(h)[None, :] + dy[:, None])[:, None, :, None]
    cols = (np.arange(w)[None, :] + dx[:, None])[:, None, None, :]
    return np.take_along_axis(np.take_along_axis(padded, np.broadcast_to(rows, (n, c, h, w + 2)), 2), cols, 3)


def train_epoch(
    trainer: Trainer,
    data: Arrays,
    batch_size: int,
    rng: np.random.Generator,
    stop: StopFlag,
    max_batches: int | None = None,
    augment: bool = False,
) -> tuple[float, float] | None:
    """One pass over the training arrays in shuffled slices; None when a stop signal interrupted it."""
    order = rng.permutation(len(data.y_train))
    losses, correct, seen = [], [], 0
    for batch, start in enumerate(range(0, len(order), batch_size)):
        if stop.raised:
            return None
        if max_batches is not None and batch >= max_batches:
            break
        idx = order[start : start + batch_size]
        xb, yb = data.x_train[idx], data.y_train[idx]
        if augment:
            xb = shift(xb, rng)
        loss, right = trainer.step(tf.constant(xb), tf.constant(yb))
        losses.append(loss * len(yb))
        correct.append(right)
        seen += len(yb)
    return float(tf.add_n(losses)) / seen, int(tf.add_n(correct)) / seen


def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    loss_sum, right = 0.0, 0
    for start in range(0, len(y), EVAL_BATCH):
        xb, yb = x[start : start + EVAL_BATCH], y[start : start + EVAL_BATCH]
        logits = np.asarray(model(xb, training=False), dtype=np.float64)
        shifted = logits - logits.max(1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
        loss_sum -= float(log_probs[np.arange(len(yb)), yb].sum())
        right += int((logits.argmax(1) == yb).sum())
    return loss_sum / len(y), right / len(y)


def dry_run(run: Run, data: Arrays) -> int:
    """One tiny batch end to end (train, evaluate, export, check the export): for image smoke tests."""
    trainer = Trainer(run, data)
    rng = np.random.default_rng(run.seed)
    result = train_epoch(trainer, data, min(int(run.params["batch-size"]), 32), rng, StopFlag(), max_batches=1)
    assert result is not None
    loss, acc = evaluate(trainer.model, data.x_val[:64], data.y_val[:64])
    with tempfile.TemporaryDirectory() as tmp:
        diff = export_onnx(trainer.model, data.x_val[:8], Path(tmp) / MODEL)
    point = {"epoch": 1, "accuracy": acc, "loss": loss, "train_accuracy": result[1], "train_loss": result[0]}
    report(run.metrics_file, metric_line(point, digits=4))
    print(f"dry-run ok on {run.device}: onnx max |diff|={diff:.2e}", file=sys.stderr)
    return 0 if diff <= ONNX_TOLERANCE else 1


def _save_checkpoint(path: Path, trainer: Trainer, state: dict[str, Any], best: list[np.ndarray]) -> None:
    arrays = {f"model_{i}": np.array(v) for i, v in enumerate(trainer.model.variables)}
    arrays |= {f"optimizer_{i}": np.array(v) for i, v in enumerate(trainer.optimizer.variables)}
    arrays |= {f"best_{i}": w for i, w in enumerate(best)}
    arrays["state"] = np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy stubs take **kwds as allow_pickle
    atomic_write(path, buffer.getvalue())


def _load_checkpoint(path: Path, trainer: Trainer) -> tuple[dict[str, Any], list[np.ndarray]]:
    with np.load(path) as npz:
        for i, variable in enumerate(trainer.model.variables):
            variable.assign(npz[f"model_{i}"])
        for i, variable in enumerate(trainer.optimizer.variables):
            variable.assign(npz[f"optimizer_{i}"])
        best = [npz[f"best_{i}"] for i in range(len(trainer.model.weights)) if f"best_{i}" in npz.files]
        state: dict[str, Any] = json.loads(npz["state"].tobytes().decode())
    return state, best


def train(run: Run, data: Arrays) -> int:
    record = run.record
    assert record is not None
    doc = params_doc(run.params, run.seed, run.epochs, data.name)
    resumable = same_run(record, doc)
    if record.complete and resumable:
        metrics = record.read(METRICS)
        print(f"trial record {record.root} is already complete ({metrics['ended']}); nothing to do", file=sys.stderr)
        report(run.metrics_file, metrics["report_line"])
        return 0

    trainer = Trainer(run, data)
    rng = np.random.default_rng(run.seed)
    start_epoch = 1
    progress = Progress(run.min_delta)
    best_weights: list[np.ndarray] = []

    checkpoint = record.path(CHECKPOINT[FRAMEWORK])
    if checkpoint.is_file() and resumable:
        state, best_weights = _load_checkpoint(checkpoint, trainer)
        rng.bit_generator.state = state["rng"]
        start_epoch, progress.bad_epochs, progress.best = state["epoch"] + 1, state["bad_epochs"], state["best"]
        run.curve = record.read(CURVE, [])
        print(f"resuming {record.root} after epoch {state['epoch']}", file=sys.stderr)
    else:
        record.start_over()
        record.write(PARAMS, doc)
    record.status("running", epoch=start_epoch - 1)

    stop = StopFlag()
    stop.install()
    started = time.perf_counter()
    ended, stopped_by = "completed", None
    for epoch in range(start_epoch, run.epochs + 1):
        trainer.set_epoch_lr(epoch, run.epochs)
        result = train_epoch(
            trainer, data, int(run.params["batch-size"]), rng, stop, augment=run.params["augment"] == "shift"
        )
        if result is None:
            record.status("terminated", epoch=epoch - 1, signal=stop.signal_name, resume=RESUME_HINT)
            print(
                f"stopped by {stop.signal_name} during epoch {epoch}; checkpoint holds epoch {epoch - 1}",
                file=sys.stderr,
            )
            return EXIT_TERMINATED
        train_loss, train_acc = result
        val_loss, val_acc = evaluate(trainer.model, data.x_val, data.y_val)
        point = {
            "epoch": epoch,
            "accuracy": val_acc,
            "loss": val_loss,
            "train_accuracy": train_acc,
            "train_loss": train_loss,
        }
        run.curve.append(point)
        report(run.metrics_file, metric_line(point))
        if progress.update(point):
            best_weights = trainer.weights()
        record.write(CURVE, run.curve)
        state = {
            "epoch": epoch,
            "rng": rng.bit_generator.state,
            "bad_epochs": progress.bad_epochs,
            "best": progress.best,
        }
        _save_checkpoint(checkpoint, trainer, state, best_weights)
        record.status("running", epoch=epoch)
        if progress.bad_epochs >= int(run.params["patience"]):
            ended, stopped_by = "early_stopped", "patience"
            break
        if epoch < run.epochs and run.record is not None and stopped_by_peers(run.stopping, record, run.curve):
            ended, stopped_by = "early_stopped", run.stopping.name
            print(f"stopped by the {run.stopping.name} rule after epoch {epoch}", file=sys.stderr)
            break
        if stop.raised:
            record.status("terminated", epoch=epoch, signal=stop.signal_name, resume=RESUME_HINT)
            return EXIT_TERMINATED

    return publish(run, data, trainer, progress.best, best_weights, ended, stopped_by, time.perf_counter() - started)


def publish(
    run: Run,
    data: Arrays,
    trainer: Trainer,
    best: dict[str, Any],
    best_weights: list[np.ndarray],
    ended: str,
    stopped_by: str | None,
    seconds: float,
) -> int:
    """Write the best epoch's model and the final metrics, then COMPLETE, last."""
    record = run.record
    assert record is not None
    trainer.set_weights(best_weights)
    test_loss, test_acc = evaluate(trainer.model, data.x_test, data.y_test)
    weights_tmp = record.staging(WEIGHTS[FRAMEWORK])
    trainer.model.save_weights(weights_tmp)
    weights_tmp.replace(record.path(WEIGHTS[FRAMEWORK]))
    onnx_tmp = record.staging(MODEL)
    diff = export_onnx(trainer.model, data.x_val[:256], onnx_tmp)
    if diff > ONNX_TOLERANCE:
        onnx_tmp.unlink(missing_ok=True)
        record.status("failed", reason=f"ONNX export differs from TensorFlow by {diff:.2e}")
        print(
            f"ONNX export differs from TensorFlow by {diff:.2e} (> {ONNX_TOLERANCE}); not publishing", file=sys.stderr
        )
        return 1
    onnx_tmp.replace(record.path(MODEL))
    serving_cost.write(record)
    metrics = final_metrics(
        run.curve,
        best,
        ended=ended,
        stopped_by=stopped_by,
        test_accuracy=test_acc,
        test_loss=test_loss,
        onnx_diff=diff,
        shape=data.shape,
        classes=data.classes,
        device=run.device,
        framework=FRAMEWORK,
        seconds=seconds,
    )
    record.write(METRICS, metrics)
    record.status(ended, epoch=run.curve[-1]["epoch"])
    record.mark_complete()
    print(
        f"{ended}: best val accuracy {best['accuracy']:.4f} at epoch {best['epoch']}, test accuracy "
        f"{test_acc:.4f}; record in {record.root}",
        file=sys.stderr,
    )
    return 0
