"""What one trial does the same whichever framework trains it: the metric lines, the choice of the best
epoch, patience, the cross-trial stopping check, SIGTERM handling and the final metrics document.
Each trainer supplies only the framework parts (model, optimizer, epoch, checkpoint, ONNX export)."""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from .record import PARAMS, TrialRecord
from .stopping import Rule, peer_curves, should_stop

EXIT_TERMINATED = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM
# Largest |onnxruntime - framework| logit difference a trainer accepts before publishing its model.
ONNX_TOLERANCE = 1e-4
RESUME_HINT = "rerun the same command to continue from the last checkpoint"


@dataclass
class StopFlag:
    """Set by SIGTERM; the loop stops at the next batch boundary instead of dying mid-write."""

    raised: bool = False
    signal_name: str = ""

    def install(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            self.raised = True
            self.signal_name = signal.Signals(signum).name

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def metric_line(point: dict[str, float], digits: int = 6) -> str:
    """One epoch in Katib's StdOut format (`name=value` pairs); the names are flags.METRICS."""
    return (
        f"epoch={point['epoch']} accuracy={point['accuracy']:.{digits}f} loss={point['loss']:.{digits}f} "
        f"train_accuracy={point['train_accuracy']:.{digits}f} train_loss={point['train_loss']:.{digits}f}"
    )


def report(metrics_file: Path | None, line: str) -> None:
    """Print the line for the StdOut collector (flushed: Katib reads it live) and append it to the
    metrics file for the File collector."""
    print(line, flush=True)  # noqa: T201
    if metrics_file is not None:
        metrics_file.parent.mkdir(parents=True, exist_ok=True)
        with open(metrics_file, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def params_doc(params: dict[str, Any], seed: int, epochs: int, dataset: str) -> dict[str, Any]:
    return {"params": params, "seed": seed, "epochs": epochs, "dataset": dataset}


def same_run(record: TrialRecord, doc: dict[str, Any]) -> bool:
    """The record on disk belongs to this run only if it was made with the same parameters."""
    return bool(record.read(PARAMS) == doc)


@dataclass
class Progress:
    """The best epoch so far and the epochs since it improved (patience)."""

    min_delta: float
    best: dict[str, Any] = field(default_factory=lambda: {"accuracy": -1.0, "epoch": 0})
    bad_epochs: int = 0

    def update(self, point: dict[str, float]) -> bool:
        """Record an epoch; True when it is the new best. Better accuracy, or the same accuracy at a lower
        loss: on a small validation split accuracy saturates early, and the loss still tells the
        better-settled epoch."""
        acc, loss = point["accuracy"], point["loss"]
        if acc > self.best["accuracy"] + self.min_delta or (
            acc >= self.best["accuracy"] and loss < self.best.get("loss", float("inf")) - self.min_delta
        ):
            self.best, self.bad_epochs = {"accuracy": acc, "loss": loss, "epoch": point["epoch"]}, 0
            return True
        self.bad_epochs += 1
        return False


def stopped_by_peers(rule: Rule, record: TrialRecord, curve: list[dict[str, float]]) -> bool:
    """Whether the early-stopping rule, applied to the other trials' curves, stops this trial now."""
    if rule.name == "none" or not curve or rule.metric not in curve[-1]:
        return False  # no rule, or the objective is not a metric the trainer reports: nothing to compare
    mine = [float(p[rule.metric]) for p in curve]
    others = peer_curves(record.root.parent, record.root.name, rule.metric)
    return should_stop(mine, others, rule)


def final_metrics(
    curve: list[dict[str, float]],
    best: dict[str, Any],
    *,
    ended: str,
    stopped_by: str | None,
    test_accuracy: float,
    test_loss: float,
    onnx_diff: float,
    shape: tuple[int, int, int],
    classes: int,
    device: str,
    framework: str,
    seconds: float,
) -> dict[str, Any]:
    """The metrics document (record.METRICS): the best epoch's validation figures are the objective."""
    last = curve[-1]
    return {
        "ended": ended,
        "stopped_by": stopped_by,
        "epochs_run": last["epoch"],
        "best_epoch": best["epoch"],
        "accuracy": best["accuracy"],
        "loss": best["loss"],
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "onnx_max_abs_diff": onnx_diff,
        "input_shape": [-1, *shape],
        "classes": classes,
        "device": device,
        "framework": framework,
        "train_seconds": round(seconds, 3),
        "report_line": metric_line({**last, "accuracy": best["accuracy"], "loss": best["loss"]}),
    }


def say(message: str) -> None:
    print(message, file=sys.stderr)  # noqa: T201
