"""One trial: train, report each epoch in Katib's StdOut format, checkpoint, and publish the record."""

from __future__ import annotations

import contextlib
import copy
import signal
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
from torch import nn

from .data import Dataset
from .files import read_json
from .model import build_model, build_optimizer
from .record import TrialRecord, save_torch, write_json
from .stopping import Rule, peer_curves, should_stop

EXIT_TERMINATED = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM
EVAL_BATCH = 4096
ONNX_TOLERANCE = 1e-4


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
        if self.stopping.name == "none" or self.record is None:
            return False
        if self.stopping.metric not in self.curve[-1]:
            return False  # the objective is not a metric the trainer reports: nothing to compare
        mine = [float(p[self.stopping.metric]) for p in self.curve]
        others = peer_curves(self.record.root.parent, self.record.root.name, self.stopping.metric)
        return should_stop(mine, others, self.stopping)


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


def report(run: Run, line: str) -> None:
    print(line, flush=True)
    if run.metrics_file is not None:
        run.metrics_file.parent.mkdir(parents=True, exist_ok=True)
        with open(run.metrics_file, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


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
        diff = export_onnx(model, data.x_val[:8], Path(tmp) / "model.onnx")
    report(run, f"epoch=1 accuracy={acc:.4f} loss={loss:.4f} train_accuracy={result[1]:.4f} train_loss={result[0]:.4f}")
    print(f"dry-run ok on {run.device.type}: onnx max |diff|={diff:.2e}", file=sys.stderr)
    return 0 if diff <= ONNX_TOLERANCE else 1


def train(run: Run, data: Dataset) -> int:
    record = run.record
    assert record is not None
    params_doc = {"params": run.params, "seed": run.seed, "epochs": run.epochs, "dataset": data.name}
    # The record on disk belongs to this run only if it was made with the same parameters.
    same_run = record.path("params.json").is_file() and read_json(record.path("params.json")) == params_doc
    if record.complete and same_run:
        metrics = read_json(record.path("metrics.json"))
        print(f"trial record {record.root} is already complete ({metrics['ended']}); nothing to do", file=sys.stderr)
        report(run, metrics["report_line"])
        return 0

    model = build_model(run.params, data.shape, data.classes, data.x_train).to(run.device)
    optimizer = build_optimizer(run.params, model)
    # Cosine decay over the planned epochs: late epochs settle instead of bouncing around the optimum.
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=run.epochs)
    generator = torch.Generator().manual_seed(run.seed)
    start_epoch, bad_epochs = 1, 0
    best: dict[str, Any] = {"accuracy": -1.0, "epoch": 0}
    best_state: dict[str, torch.Tensor] = {}

    checkpoint = record.path("checkpoint.pt")
    if checkpoint.is_file() and same_run:
        state = torch.load(checkpoint, map_location=run.device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, bad_epochs, best, best_state = (
            state["epoch"] + 1,
            state["bad_epochs"],
            state["best"],
            state["best_state"],
        )
        run.curve = read_json(record.path("curve.json"))
        print(f"resuming {record.root} after epoch {state['epoch']}", file=sys.stderr)
    else:
        record.start_over()
        write_json(record.path("params.json"), params_doc)
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
                resume="rerun the same command to continue from the last checkpoint",
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
        report(
            run,
            f"epoch={epoch} accuracy={val_acc:.6f} loss={val_loss:.6f} train_accuracy={train_acc:.6f} "
            f"train_loss={train_loss:.6f}",
        )
        # Better accuracy, or the same accuracy at a lower loss: on a small validation split accuracy
        # saturates early, and the loss still tells the better-settled epoch.
        if val_acc > best["accuracy"] + run.min_delta or (
            val_acc >= best["accuracy"] and val_loss < best.get("loss", float("inf")) - run.min_delta
        ):
            best, bad_epochs = {"accuracy": val_acc, "loss": val_loss, "epoch": epoch}, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        write_json(record.path("curve.json"), run.curve)
        save_torch(
            checkpoint,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "bad_epochs": bad_epochs,
                "best": best,
                "best_state": best_state,
            },
        )
        record.status("running", epoch=epoch)
        if bad_epochs >= int(run.params["patience"]):
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
                resume="rerun the same command to continue from the last checkpoint",
            )
            return EXIT_TERMINATED

    return publish(run, data, model, best, best_state, ended, stopped_by, time.perf_counter() - started)


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
    save_torch(record.path("weights.pt"), {k: v.cpu() for k, v in best_state.items()})
    onnx_tmp = record.path(".model.onnx.tmp")
    diff = export_onnx(model, data.x_val[:256], onnx_tmp)
    if diff > ONNX_TOLERANCE:
        onnx_tmp.unlink(missing_ok=True)
        record.status("failed", reason=f"ONNX export differs from PyTorch by {diff:.2e}")
        print(f"ONNX export differs from PyTorch by {diff:.2e} (> {ONNX_TOLERANCE}); not publishing", file=sys.stderr)
        return 1
    onnx_tmp.replace(record.path("model.onnx"))
    last = run.curve[-1]
    metrics = {
        "ended": ended,
        "stopped_by": stopped_by,
        "epochs_run": last["epoch"],
        "best_epoch": best["epoch"],
        "accuracy": best["accuracy"],
        "loss": best["loss"],
        "test_accuracy": test_acc,
        "test_loss": test_loss,
        "onnx_max_abs_diff": diff,
        "input_shape": [-1, *data.shape],
        "classes": data.classes,
        "device": run.device.type,
        "train_seconds": round(seconds, 3),
        "report_line": f"epoch={last['epoch']} accuracy={best['accuracy']:.6f} loss={best['loss']:.6f} "
        f"train_accuracy={last['train_accuracy']:.6f} train_loss={last['train_loss']:.6f}",
    }
    write_json(record.path("metrics.json"), metrics)
    record.status(ended, epoch=last["epoch"])
    record.mark_complete()
    print(
        f"{ended}: best val accuracy {best['accuracy']:.4f} at epoch {best['epoch']}, test accuracy "
        f"{test_acc:.4f}; record in {record.root}",
        file=sys.stderr,
    )
    return 0
