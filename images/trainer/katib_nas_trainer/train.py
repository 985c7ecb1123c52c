"""One trial: train, report each epoch in Katib's StdOut format, checkpoint, and publish the record."""

from __future__ import annotations

import contextlib
import copy
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from katib_nas_contract import serving_cost
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

from .data import Dataset
from .model import build_model, build_optimizer
from .record import save_torch

__all__ = ["EXIT_TERMINATED", "Run", "StopFlag", "dry_run", "pick_device", "seed_everything", "train", "train_epoch"]

EVAL_BATCH = 4096
FRAMEWORK = "pytorch"


@dataclass
class Run:
    params: dict[str, Any]
    seed: int
    epochs: int
    min_delta: float
    device: torch.device
    record: TrialRecord | None
    metrics_file: Path | None = None
    curve: list[dict[str, float]] = field(default_factory=list)
    stopping: Rule = field(default_factory=Rule)

    def stopped_by_peers(self) -> bool:
        """Whether the early-stopping rule, applied to the other trials' curves, stops this trial now."""
        return self.record is not None and stopped_by_peers(self.stopping, self.record, self.curve)


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is visible; use --device cpu or auto")
    return torch.device(requested)


def seed_everything(seed: int, device: torch.device) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)


def _autocast(device: torch.device) -> Any:
    # Mixed precision where it pays: bf16 on CUDA needs no loss scaling. Plain float32 on CPU.
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> tuple[float, float]:
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(y), EVAL_BATCH):
        xb, yb = x[start : start + EVAL_BATCH], y[start : start + EVAL_BATCH]
        with _autocast(device):
            logits = model(xb)
        loss_sum += float(nn.functional.cross_entropy(logits.float(), yb, reduction="sum"))
        correct += int((logits.argmax(1) == yb).sum())
    return loss_sum / len(y), correct / len(y)


def shift(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Move each image by up to one pixel in each direction (zero fill): cheap augmentation for
    small digit images, done on the whole batch tensor."""
    n, _, h, w = x.shape
    if h < 4 or w < 4:
        return x
    padded = nn.functional.pad(x, (1, 1, 1, 1))
    dy = torch.randint(0, 3, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 3, (n,), generator=generator).to(x.device)
    rows = (torch.arange(h, device=x.device)[None, :] + dy[:, None])[:, None, :, None].expand(n, x.shape[1], h, w + 2)
    cols = (torch.arange(w, device=x.device)[None, :] + dx[:, None])[:, None, None, :].expand(n, x.shape[1], h, w)
    return padded.gather(2, rows).gather(3, cols)


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Dataset,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    stop: StopFlag,
    max_batches: int | None = None,
    augment: bool = False,
) -> tuple[float, float] | None:
    """One pass over the training tensors in shuffled slices; None when a stop signal interrupted it."""
    model.train()
    order = torch.randperm(len(data.y_train), generator=generator).to(device)
    # Sums stay on the device: converting to Python numbers every step would sync a GPU each batch.
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    for batch, start in enumerate(range(0, len(order), batch_size)):
        if stop.raised:
            return None
        if max_batches is not None and batch >= max_batches:
            break
        idx = order[start : start + batch_size]
        xb, yb = data.x_train[idx], data.y_train[idx]
        if augment:
            xb = shift(xb, generator)
        with _autocast(device):
            logits = model(xb)
            loss = nn.functional.cross_entropy(logits.float(), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        loss_sum += loss.detach() * len(yb)
        correct += (logits.detach().argmax(1) == yb).sum()
        seen += len(yb)
    return float(loss_sum) / seen, int(correct) / seen


def export_onnx(model: nn.Module, sample: torch.Tensor, path: Path) -> float:
    """Export for onnxruntime (the server needs no PyTorch) and return the largest difference
    between onnxruntime's and PyTorch's logits on `sample`."""
    import onnxruntime as ort

    model = copy.deepcopy(model).float().cpu().eval()
    sample = sample.float().cpu()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (sample,),
            str(path),
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(None, {"input": sample.numpy()})[0]
    with torch.no_grad():
        torch_logits = model(sample).numpy()
    return float(np.abs(onnx_logits - torch_logits).max())


def dry_run(run: Run, data: Dataset) -> int:
    """One tiny batch end to end (train, evaluate, export, check the export): for image smoke tests."""
    model = build_model(run.params, data.shape, data.classes, data.x_train).to(run.device)
    optimizer = build_optimizer(run.params, model)
    generator = torch.Generator().manual_seed(run.seed)
    result = train_epoch(
        model, optimizer, data, min(int(run.params["batch-size"]), 32), generator, run.device, StopFlag(), max_batches=1
    )
    assert result is not None
    loss, acc = evaluate(model, data.x_val[:64], data.y_val[:64], run.device)
    with tempfile.TemporaryDirectory() as tmp:
        diff = export_onnx(model, data.x_val[:8], Path(tmp) / MODEL)
    point = {"epoch": 1, "accuracy": acc, "loss": loss, "train_accuracy": result[1], "train_loss": result[0]}
    report(run.metrics_file, metric_line(point, digits=4))
    print(f"dry-run ok on {run.device.type}: onnx max |diff|={diff:.2e}", file=sys.stderr)
    return 0 if diff <= ONNX_TOLERANCE else 1


def train(run: Run, data: Dataset) -> int:
    record = run.record
    assert record is not None
    doc = params_doc(run.params, run.seed, run.epochs, data.name)
    resumable = same_run(record, doc)
    if record.complete and resumable:
        metrics = record.read(METRICS)
        print(f"trial record {record.root} is already complete ({metrics['ended']}); nothing to do", file=sys.stderr)
        report(run.metrics_file, metrics["report_line"])
        return 0

    model = build_model(run.params, data.shape, data.classes, data.x_train).to(run.device)
    optimizer = build_optimizer(run.params, model)
    # Cosine decay over the planned epochs: late epochs settle instead of bouncing around the optimum.
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=run.epochs)
    generator = torch.Generator().manual_seed(run.seed)
    start_epoch = 1
    progress = Progress(run.min_delta)
    best_state: dict[str, torch.Tensor] = {}

    checkpoint = record.path(CHECKPOINT[FRAMEWORK])
    if checkpoint.is_file() and resumable:
        state = torch.load(checkpoint, map_location=run.device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, progress.bad_epochs, progress.best, best_state = (
            state["epoch"] + 1,
            state["bad_epochs"],
            state["best"],
            state["best_state"],
        )
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
        result = train_epoch(
            model,
            optimizer,
            data,
            int(run.params["batch-size"]),
            generator,
            run.device,
            stop,
            augment=run.params["augment"] == "shift",
        )
        if result is None:
            record.status(
                "terminated",
                epoch=epoch - 1,
                signal=stop.signal_name,
                resume=RESUME_HINT,
            )
            print(
                f"stopped by {stop.signal_name} during epoch {epoch}; checkpoint holds epoch {epoch - 1}",
                file=sys.stderr,
            )
            return EXIT_TERMINATED
        train_loss, train_acc = result
        scheduler.step()
        val_loss, val_acc = evaluate(model, data.x_val, data.y_val, run.device)
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
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        record.write(CURVE, run.curve)
        save_torch(
            checkpoint,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "bad_epochs": progress.bad_epochs,
                "best": progress.best,
                "best_state": best_state,
            },
        )
        record.status("running", epoch=epoch)
        if progress.bad_epochs >= int(run.params["patience"]):
            ended, stopped_by = "early_stopped", "patience"
            break
        if epoch < run.epochs and run.stopped_by_peers():
            ended, stopped_by = "early_stopped", run.stopping.name
            print(f"stopped by the {run.stopping.name} rule after epoch {epoch}", file=sys.stderr)
            break
        if stop.raised:
            record.status(
                "terminated",
                epoch=epoch,
                signal=stop.signal_name,
                resume=RESUME_HINT,
            )
            return EXIT_TERMINATED

    return publish(run, data, model, progress.best, best_state, ended, stopped_by, time.perf_counter() - started)


def publish(
    run: Run,
    data: Dataset,
    model: nn.Module,
    best: dict[str, Any],
    best_state: dict[str, torch.Tensor],
    ended: str,
    stopped_by: str | None,
    seconds: float,
) -> int:
    """Write the best epoch's model and the final metrics, then COMPLETE, last."""
    record = run.record
    assert record is not None
    model.load_state_dict(best_state)
    test_loss, test_acc = evaluate(model, data.x_test, data.y_test, run.device)
    save_torch(record.path(WEIGHTS[FRAMEWORK]), {k: v.cpu() for k, v in best_state.items()})
    onnx_tmp = record.staging(MODEL)
    diff = export_onnx(model, data.x_val[:256], onnx_tmp)
    if diff > ONNX_TOLERANCE:
        onnx_tmp.unlink(missing_ok=True)
        record.status("failed", reason=f"ONNX export differs from PyTorch by {diff:.2e}")
        print(f"ONNX export differs from PyTorch by {diff:.2e} (> {ONNX_TOLERANCE}); not publishing", file=sys.stderr)
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
        device=run.device.type,
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
