"""What an exported model costs to serve, and the budget promotion holds models to.

`measure` runs the record's ONNX model the way the server runs one request: onnxruntime on the CPU,
one row, one intra-op and one inter-op thread, sequential execution. Both trainers call it once at
export and write the result as the record's SERVING_COST file; promotion (best.py), the local runner
and the report read it from there. onnxruntime, and onnx for the parameter count, are imported only
when measuring: both trainer images have them, and the other readers of this module need neither.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .record import MODEL, SERVING_COST, TrialRecord

WARMUP = 50  # first runs allocate buffers and fill caches: not what a warm server pays
RUNS = 1000  # p99 from 1,000 runs is the 10th slowest: steady enough to rank models
TIME_CAP_S = 10.0  # a large model on a slow node stops early (at least MIN_RUNS) rather than hold up the trial
MIN_RUNS = 100

# The keys of the SERVING_COST document (record.py names the file).
LATENCY_P50 = "latency_p50_ms"
LATENCY_P99 = "latency_p99_ms"
PARAMETERS = "parameters"
MODEL_BYTES = "model_bytes"


def measure(model: Path, runs: int = RUNS, warmup: int = WARMUP, time_cap: float = TIME_CAP_S) -> dict[str, Any]:
    """Batch-1 latency p50 and p99 in milliseconds on one thread, the parameter count and the file size."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    first = session.get_inputs()[0]
    shape = [1 if i == 0 or not isinstance(d, int) else d for i, d in enumerate(first.shape)]
    # Dense nets cost the same for any input values; a fixed seed keeps the input the same per model.
    feed = {first.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    for _ in range(warmup):
        session.run(None, feed)
    times: list[int] = []
    deadline = time.perf_counter() + time_cap
    while len(times) < runs and (len(times) < MIN_RUNS or time.perf_counter() < deadline):
        start = time.perf_counter_ns()
        session.run(None, feed)
        times.append(time.perf_counter_ns() - start)
    p50, p99 = np.percentile(np.array(times, dtype=np.float64) / 1e6, [50, 99])
    return {
        LATENCY_P50: round(float(p50), 4),
        LATENCY_P99: round(float(p99), 4),
        PARAMETERS: count_parameters(model),
        MODEL_BYTES: model.stat().st_size,
        "runs": len(times),
        "threads": 1,
        "batch": 1,
        "onnxruntime": ort.__version__,
    }


def write(record: TrialRecord) -> None:
    """Measure the record's exported model and write SERVING_COST (before COMPLETE, like every record file)."""
    record.write(SERVING_COST, measure(record.path(MODEL)))


def count_parameters(model: Path) -> int:
    """Floating-point numbers the model stores in initializers and constants: the weights the server
    holds (normalisation statistics included, as exported). Integer tensors are shapes and indices."""
    import onnx

    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE}
    graph = onnx.load(str(model), load_external_data=False).graph
    tensors = list(graph.initializer)
    tensors += [a.t for node in graph.node if node.op_type == "Constant" for a in node.attribute if a.name == "value"]
    return int(sum(int(np.prod(t.dims, dtype=np.int64)) for t in tensors if t.data_type in floats))


@dataclass(frozen=True)
class Budget:
    """Most a promoted model may cost to serve; None: no limit on that figure."""

    latency_p99_ms: float | None = None
    model_bytes: int | None = None

    @property
    def is_set(self) -> bool:
        return self.latency_p99_ms is not None or self.model_bytes is not None

    def violations(self, cost: Any) -> list[str]:
        """Why a record's SERVING_COST document is over budget (empty: it fits). A record without a
        measurement cannot be shown to fit, so it does not."""
        if not self.is_set:
            return []
        if not isinstance(cost, dict):
            return ["no serving cost measured"]
        out = []
        for limit, key, unit in ((self.latency_p99_ms, LATENCY_P99, " ms"), (self.model_bytes, MODEL_BYTES, " bytes")):
            value = cost.get(key)
            if limit is None:
                continue
            if not isinstance(value, int | float) or isinstance(value, bool):
                out.append(f"no {key} measured")
            elif value > limit:
                out.append(f"{key} {value:g}{unit} > {limit:g}{unit}")
        return out

    def describe(self) -> str:
        parts = []
        if self.latency_p99_ms is not None:
            parts.append(f"p99 latency <= {self.latency_p99_ms:g} ms")
        if self.model_bytes is not None:
            parts.append(f"model <= {self.model_bytes} bytes")
        return " and ".join(parts) or "no budget"
