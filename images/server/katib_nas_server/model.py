"""The served model: an ONNX file from a complete trial record, loaded with onnxruntime."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from katib_nas_contract.best import no_fit_reason, read_pointer
from katib_nas_contract.files import read_json_or
from katib_nas_contract.record import METRICS, MODEL, PARAMS, POINTER, is_complete


class ModelNotFound(Exception):
    """No complete model to load (yet); the message says where the server looked."""


class RecordIncomplete(ModelNotFound):
    """best.json names a trial whose record is not (yet) complete: try again later."""


@dataclass(frozen=True)
class Pointer:
    """Which record to serve: the trial directory and a version string that changes when best.json moves."""

    record: Path
    version: str
    published_at: float | None = None  # best.json's publication time; None for a trial record served as is


def resolve(model_dir: Path) -> Pointer:
    """MODEL_DIR is an experiment directory (follow best.json) or one trial record (serve it as is).
    Messages name MODEL_DIR, not its absolute path: they reach clients in 503 answers."""
    if (model_dir / MODEL).is_file():
        return Pointer(model_dir, model_dir.name)
    pointer = read_pointer(model_dir)
    if pointer is None:
        raise ModelNotFound(f"no {POINTER} in MODEL_DIR yet (no trial has completed)")
    trial = pointer.get("trial") if isinstance(pointer, dict) else None
    published = pointer.get("published_at", 0) if isinstance(pointer, dict) else None
    if (reason := no_fit_reason(pointer)) is not None:  # promotion's budget rules out every model
        raise ModelNotFound(f"{POINTER}: {reason}")
    # A pointer someone edited by hand (or another tool wrote) is a problem to report, not a crash.
    if not isinstance(trial, str) or not trial or trial in (".", "..") or "/" in trial or "\\" in trial:
        raise ModelNotFound(f"{POINTER} in MODEL_DIR does not name a trial directory; the promote step rewrites it")
    if isinstance(published, bool) or not isinstance(published, int | float) or not math.isfinite(published):
        raise ModelNotFound(f"{POINTER} in MODEL_DIR has no numeric published_at; the promote step rewrites it")
    return Pointer(model_dir / trial, f"{trial}@{published:.0f}", float(published))


@dataclass
class LoadedModel:
    session: ort.InferenceSession
    version: str
    trial: str
    input_name: str
    output_name: str
    sample_shape: tuple[int, int, int]  # C, H, W of one sample
    classes: int
    parameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    published_at: float | None = None  # when best.json named this model (the pointer's published_at)

    @property
    def features(self) -> int:
        c, h, w = self.sample_shape
        return c * h * w

    def logits(self, x: np.ndarray) -> np.ndarray:
        """x: float32 (N, C, H, W) -> float32 (N, classes)."""
        out: np.ndarray = self.session.run([self.output_name], {self.input_name: x})[0]
        return out


def softmax(logits: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # finite logits far apart: exp underflows to 0, which is right
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs: np.ndarray = shifted / shifted.sum(axis=1, keepdims=True)
    return probs


def load(pointer: Pointer, threads: int = 1) -> LoadedModel:
    record = pointer.record
    if not is_complete(record):
        raise RecordIncomplete(f"trial {record.name} has no complete record yet (no completion marker or {MODEL})")
    options = ort.SessionOptions()
    # One thread per inference: the server scales with processes, and tiny models lose to thread hand-off.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(record / MODEL), options, providers=["CPUExecutionProvider"])
    inputs, outputs = session.get_inputs(), session.get_outputs()
    shape = inputs[0].shape  # ["batch", C, H, W]
    if len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]):
        raise ModelNotFound(f"{record}/{MODEL} takes input shape {shape}; expected [batch, C, H, W]")
    classes = outputs[0].shape[-1]
    params, metrics = _dict(record / PARAMS), _dict(record / METRICS)
    return LoadedModel(
        session=session,
        version=pointer.version,
        trial=record.name,
        input_name=inputs[0].name,
        output_name=outputs[0].name,
        sample_shape=(int(shape[1]), int(shape[2]), int(shape[3])),
        classes=int(classes) if isinstance(classes, int) else int(metrics.get("classes", 0)),
        parameters=params.get("params", {}),
        metrics=metrics,
        published_at=pointer.published_at,
    )


def _dict(path: Path) -> dict[str, Any]:
    data = read_json_or(path, {})
    return data if isinstance(data, dict) else {}
