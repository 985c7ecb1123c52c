"""The Keras parts of a trial (TensorFlow backend): model and optimizer, one compiled training step, one
epoch, evaluation, checkpoint and ONNX export. The trial itself (loop, record, rules) is the
contract's, katib_nas_contract.trial, shared with the PyTorch trainer."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from katib_nas_contract.datasets import Arrays
from katib_nas_contract.files import atomic_write
from katib_nas_contract.trial import Run, StopFlag

from .model import build_model, build_optimizer
from .onnx_export import export_onnx

EVAL_BATCH = 4096


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


class KerasTrainer:
    """The contract's Trainer hooks on Keras: the model, its optimizer and one compiled training step."""

    framework = "keras"
    library = "TensorFlow"

    def __init__(self, run: Run, data: Arrays, device: str) -> None:
        self.data = data
        self.device = device
        self.model = build_model(run.params, data.shape, data.classes, data.x_train)
        self.optimizer = build_optimizer(run.params)
        self.optimizer.build(self.model.trainable_variables)
        self.loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.step = tf.function(self._step, reduce_retracing=True)
        self.rng = np.random.default_rng(run.seed)

    def _step(self, x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.model(x, training=True)
            loss = self.loss(y, logits)
        grads = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.int64))
        return loss, correct

    def set_lr(self, lr: float) -> None:
        self.optimizer.learning_rate = lr

    def train_epoch(
        self, batch_size: int, stop: StopFlag, *, augment: bool = False, max_batches: int | None = None
    ) -> tuple[float, float] | None:
        data = self.data
        order = self.rng.permutation(len(data.y_train))
        losses, correct, seen = [], [], 0
        for batch, start in enumerate(range(0, len(order), batch_size)):
            if stop.raised:
                return None
            if max_batches is not None and batch >= max_batches:
                break
            idx = order[start : start + batch_size]
            xb, yb = data.x_train[idx], data.y_train[idx]
            if augment:
                xb = shift(xb, self.rng)
            loss, right = self.step(tf.constant(xb), tf.constant(yb))
            losses.append(loss * len(yb))
            correct.append(right)
            seen += len(yb)
        return float(tf.add_n(losses)) / seen, int(tf.add_n(correct)) / seen

    def evaluate(self, split: str, limit: int | None = None) -> tuple[float, float]:
        x, y = getattr(self.data, f"x_{split}")[:limit], getattr(self.data, f"y_{split}")[:limit]
        loss_sum, right = 0.0, 0
        for start in range(0, len(y), EVAL_BATCH):
            xb, yb = x[start : start + EVAL_BATCH], y[start : start + EVAL_BATCH]
            logits = np.asarray(self.model(xb, training=False), dtype=np.float64)
            shifted = logits - logits.max(1, keepdims=True)
            log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
            loss_sum -= float(log_probs[np.arange(len(yb)), yb].sum())
            right += int((logits.argmax(1) == yb).sum())
        return loss_sum / len(y), right / len(y)

    def weights(self) -> list[np.ndarray]:
        return [np.array(v) for v in self.model.weights]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        for variable, value in zip(self.model.weights, weights, strict=True):
            variable.assign(value)

    def save_checkpoint(self, path: Path, state: dict[str, Any], best: list[np.ndarray] | None) -> None:
        arrays = {f"model_{i}": np.array(v) for i, v in enumerate(self.model.variables)}
        arrays |= {f"optimizer_{i}": np.array(v) for i, v in enumerate(self.optimizer.variables)}
        arrays |= {f"best_{i}": w for i, w in enumerate(best or [])}
        loop = {**state, "rng": self.rng.bit_generator.state}
        arrays["state"] = np.frombuffer(json.dumps(loop).encode(), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy stubs take **kwds as allow_pickle
        atomic_write(path, buffer.getvalue())

    def load_checkpoint(self, path: Path) -> tuple[dict[str, Any], list[np.ndarray]]:
        with np.load(path) as npz:
            for i, variable in enumerate(self.model.variables):
                variable.assign(npz[f"model_{i}"])
            for i, variable in enumerate(self.optimizer.variables):
                variable.assign(npz[f"optimizer_{i}"])
            best = [npz[f"best_{i}"] for i in range(len(self.model.weights)) if f"best_{i}" in npz.files]
            state: dict[str, Any] = json.loads(npz["state"].tobytes().decode())
        self.rng.bit_generator.state = state.pop("rng")
        return state, best

    def save_weights(self, path: Path) -> None:
        self.model.save_weights(path)

    def export_onnx(self, path: Path, samples: int) -> float:
        return export_onnx(self.model, self.data.x_val[:samples], path)
