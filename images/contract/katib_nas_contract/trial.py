"""What one trial does the same whichever framework trains it: the epoch loop with its metric lines,
learning-rate schedule, choice of the best epoch, patience, cross-trial stopping check, SIGTERM
handling, checkpoint and resume, and the publication of the record (best model, ONNX export, final
metrics, COMPLETE last). Each trainer supplies only the framework parts through the `Trainer` hooks."""

from __future__ import annotations

import math
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from . import serving_cost
from .datasets import Arrays
from .record import CHECKPOINT, CURVE, METRICS, MODEL, PARAMS, WEIGHTS, TrialRecord
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


def epoch_lr(base_lr: float, epoch: int, epochs: int) -> float:
    """Cosine decay over the planned epochs, one step per epoch (epoch 1 trains at the base rate): late
    epochs settle instead of bouncing around the optimum. PyTorch's CosineAnnealingLR in closed form."""
    return base_lr * (1 + math.cos(math.pi * (epoch - 1) / epochs)) / 2


class Trainer(Protocol):
    """One framework's model, optimizer and data for one trial: the hooks the shared loop calls."""

    framework: str  # the key of record.CHECKPOINT and record.WEIGHTS, and metrics' "framework"
    library: str  # what the ONNX export is checked against, as messages name it
    device: str  # "cpu" or "cuda"

    def set_lr(self, lr: float) -> None: ...

    def train_epoch(
        self, batch_size: int, stop: StopFlag, *, augment: bool = False, max_batches: int | None = None
    ) -> tuple[float, float] | None:
        """One shuffled pass: (mean loss, accuracy), or None when `stop` was raised during it."""
        ...

    def evaluate(self, split: str, limit: int | None = None) -> tuple[float, float]:
        """(mean loss, accuracy) on the data set's "val" or "test" split, or on its first `limit` samples."""
        ...

    def weights(self) -> Any:
        """A copy of the current weights, kept as the best epoch's."""
        ...

    def set_weights(self, weights: Any) -> None: ...

    def save_checkpoint(self, path: Path, state: dict[str, Any], best: Any) -> None:
        """Write (atomically) everything resume needs: model, optimizer, the trainer's RNG, the loop's
        `state` and the best weights."""
        ...

    def load_checkpoint(self, path: Path) -> tuple[dict[str, Any], Any]:
        """Restore a checkpoint; returns the loop's state and the best weights."""
        ...

    def save_weights(self, path: Path) -> None:
        """The weights in the framework's own format (record.WEIGHTS)."""
        ...

    def export_onnx(self, path: Path, samples: int) -> float:
        """Write the ONNX model; the largest |onnxruntime - framework| logit on the first validation samples."""
        ...


@dataclass
class Run:
    """One trial's settings from the command line, and its curve so far."""

    params: dict[str, Any]
    seed: int
    epochs: int
    min_delta: float
    record: TrialRecord | None
    metrics_file: Path | None = None
    curve: list[dict[str, float]] = field(default_factory=list)
    stopping: Rule = field(default_factory=Rule)


def dry_run(run: Run, trainer: Trainer) -> int:
    """One tiny batch end to end (train, evaluate, export, check the export): for image smoke tests."""
    result = trainer.train_epoch(min(int(run.params["batch-size"]), 32), StopFlag(), max_batches=1)
    assert result is not None
    loss, acc = trainer.evaluate("val", limit=64)
    with tempfile.TemporaryDirectory() as tmp:
        diff = trainer.export_onnx(Path(tmp) / MODEL, 8)
    point = {"epoch": 1, "accuracy": acc, "loss": loss, "train_accuracy": result[1], "train_loss": result[0]}
    report(run.metrics_file, metric_line(point, digits=4))
    say(f"dry-run ok on {trainer.device}: onnx max |diff|={diff:.2e}")
    return 0 if diff <= ONNX_TOLERANCE else 1


def train(run: Run, data: Arrays, make_trainer: Callable[[], Trainer]) -> int:
    """The trial: resume or start the record, train epoch by epoch until the planned epochs, patience,
    the peers' rule or a stop signal, then publish. The trainer is built only when there is work."""
    record = run.record
    assert record is not None
    doc = params_doc(run.params, run.seed, run.epochs, data.name)
    resumable = same_run(record, doc)
    if record.complete and resumable:
        metrics = record.read(METRICS)
        say(f"trial record {record.root} is already complete ({metrics['ended']}); nothing to do")
        report(run.metrics_file, metrics["report_line"])
        return 0

    trainer = make_trainer()
    start_epoch = 1
    progress = Progress(run.min_delta)
    best_weights: Any = None

    checkpoint = record.path(CHECKPOINT[trainer.framework])
    if checkpoint.is_file() and resumable:
        state, best_weights = trainer.load_checkpoint(checkpoint)
        start_epoch, progress.bad_epochs, progress.best = state["epoch"] + 1, state["bad_epochs"], state["best"]
        run.curve = record.read(CURVE, [])
        say(f"resuming {record.root} after epoch {state['epoch']}")
    else:
        record.start_over()
        record.write(PARAMS, doc)
    record.status("running", epoch=start_epoch - 1)

    stop = StopFlag()
    stop.install()
    started = time.perf_counter()
    ended, stopped_by = "completed", None
    for epoch in range(start_epoch, run.epochs + 1):
        trainer.set_lr(epoch_lr(float(run.params["lr"]), epoch, run.epochs))
        result = trainer.train_epoch(int(run.params["batch-size"]), stop, augment=run.params["augment"] == "shift")
        if result is None:
            record.status("terminated", epoch=epoch - 1, signal=stop.signal_name, resume=RESUME_HINT)
            say(f"stopped by {stop.signal_name} during epoch {epoch}; checkpoint holds epoch {epoch - 1}")
            return EXIT_TERMINATED
        train_loss, train_acc = result
        val_loss, val_acc = trainer.evaluate("val")
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
        state = {"epoch": epoch, "bad_epochs": progress.bad_epochs, "best": progress.best}
        trainer.save_checkpoint(checkpoint, state, best_weights)
        record.status("running", epoch=epoch)
        if progress.bad_epochs >= int(run.params["patience"]):
            ended, stopped_by = "early_stopped", "patience"
            break
        if epoch < run.epochs and stopped_by_peers(run.stopping, record, run.curve):
            ended, stopped_by = "early_stopped", run.stopping.name
            say(f"stopped by the {run.stopping.name} rule after epoch {epoch}")
            break
        if stop.raised:
            record.status("terminated", epoch=epoch, signal=stop.signal_name, resume=RESUME_HINT)
            return EXIT_TERMINATED

    seconds = time.perf_counter() - started
    return publish(run, data, trainer, progress.best, best_weights, ended, stopped_by, seconds)


def publish(
    run: Run,
    data: Arrays,
    trainer: Trainer,
    best: dict[str, Any],
    best_weights: Any,
    ended: str,
    stopped_by: str | None,
    seconds: float,
) -> int:
    """Write the best epoch's model and the final metrics, then COMPLETE, last."""
    record = run.record
    assert record is not None
    trainer.set_weights(best_weights)
    test_loss, test_acc = trainer.evaluate("test")
    weights_tmp = record.staging(WEIGHTS[trainer.framework])
    trainer.save_weights(weights_tmp)
    weights_tmp.replace(record.path(WEIGHTS[trainer.framework]))
    onnx_tmp = record.staging(MODEL)
    diff = trainer.export_onnx(onnx_tmp, 256)
    if diff > ONNX_TOLERANCE:
        onnx_tmp.unlink(missing_ok=True)
        record.status("failed", reason=f"ONNX export differs from {trainer.library} by {diff:.2e}")
        say(f"ONNX export differs from {trainer.library} by {diff:.2e} (> {ONNX_TOLERANCE}); not publishing")
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
        device=trainer.device,
        framework=trainer.framework,
        seconds=seconds,
    )
    record.write(METRICS, metrics)
    record.status(ended, epoch=run.curve[-1]["epoch"])
    record.mark_complete()
    say(
        f"{ended}: best val accuracy {best['accuracy']:.4f} at epoch {best['epoch']}, test accuracy "
        f"{test_acc:.4f}; record in {record.root}"
    )
    return 0
