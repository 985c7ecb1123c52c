"""The PyTorch parts of a trial: model and optimizer, one epoch, evaluation, checkpoint and ONNX export.
The trial itself (loop, record, rules) is the contract's, katib_nas_contract.trial."""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from katib_nas_contract import gpu_memory
from katib_nas_contract.datasets import Arrays
from katib_nas_contract.files import atomic_write
from katib_nas_contract.trial import Run, StopFlag

from .data import Dataset, from_arrays
from .model import build_model, build_optimizer

EVAL_BATCH = 4096


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


def save_torch(path: Path, payload: Any) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write(path, buffer.getvalue())


class TorchTrainer:
    """The contract's Trainer hooks on PyTorch."""

    framework = "pytorch"
    library = "PyTorch"

    def __init__(self, run: Run, data: Dataset, device: torch.device) -> None:
        self.data = data
        self.torch_device = device
        self.device = device.type
        self.model = build_model(run.params, data.shape, data.classes, data.x_train).to(device)
        self.optimizer = build_optimizer(run.params, self.model)
        self.generator = torch.Generator().manual_seed(run.seed)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def train_epoch(
        self, batch_size: int, stop: StopFlag, *, augment: bool = False, max_batches: int | None = None
    ) -> tuple[float, float] | None:
        model, data, device = self.model, self.data, self.torch_device
        model.train()
        order = torch.randperm(len(data.y_train), generator=self.generator).to(device)
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
                xb = shift(xb, self.generator)
            with _autocast(device):
                logits = model(xb)
                loss = nn.functional.cross_entropy(logits.float(), yb)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            self.optimizer.step()
            loss_sum += loss.detach() * len(yb)
            correct += (logits.detach().argmax(1) == yb).sum()
            seen += len(yb)
        return float(loss_sum) / seen, int(correct) / seen

    @torch.no_grad()
    def evaluate(self, split: str, limit: int | None = None) -> tuple[float, float]:
        x, y = getattr(self.data, f"x_{split}")[:limit], getattr(self.data, f"y_{split}")[:limit]
        self.model.eval()
        loss_sum, correct = 0.0, 0
        for start in range(0, len(y), EVAL_BATCH):
            xb, yb = x[start : start + EVAL_BATCH], y[start : start + EVAL_BATCH]
            with _autocast(self.torch_device):
                logits = self.model(xb)
            loss_sum += float(nn.functional.cross_entropy(logits.float(), yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
        return loss_sum / len(y), correct / len(y)

    def weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def set_weights(self, weights: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(weights)

    def save_checkpoint(self, path: Path, state: dict[str, Any], best: dict[str, torch.Tensor] | None) -> None:
        payload = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "best_state": best,
            "loop": state,
        }
        save_torch(path, payload)

    def load_checkpoint(self, path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        payload = torch.load(path, map_location=self.torch_device, weights_only=False)
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.generator.set_state(payload["generator"])
        torch.set_rng_state(payload["torch_rng"])
        return payload["loop"], payload["best_state"]

    def save_weights(self, path: Path) -> None:
        torch.save({k: v.cpu() for k, v in self.model.state_dict().items()}, path)

    def export_onnx(self, path: Path, samples: int) -> float:
        """Export for onnxruntime (the server needs no PyTorch) and return the largest difference
        between onnxruntime's and PyTorch's logits on the first validation samples."""
        import onnxruntime as ort

        model = copy.deepcopy(self.model).float().cpu().eval()
        sample = self.data.x_val[:samples].float().cpu()
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


def configure(threads: int, requested: str, seed: int, gpu_memory_mib: int | None = None) -> str:
    """Threads, device, the GPU memory cap and seeds; returns the device used."""
    torch.set_num_threads(threads)
    device = pick_device(requested)
    if device.type == "cuda" and gpu_memory_mib is not None:
        # The caching allocator refuses (OutOfMemoryError) past this share of the card; time-sliced
        # trials on the same card each see all of it, so each keeps to its own budget.
        index = torch.cuda.current_device()
        total = torch.cuda.get_device_properties(index).total_memory
        torch.cuda.set_per_process_memory_fraction(gpu_memory.fraction(gpu_memory_mib, total), index)
    seed_everything(seed, device)
    return device.type


def out_of_memory() -> tuple[type[BaseException], ...]:
    return (torch.cuda.OutOfMemoryError,)


def make_trainer(run: Run, arrays: Arrays, device: str) -> TorchTrainer:
    torch_device = torch.device(device)
    return TorchTrainer(run, from_arrays(arrays).to(torch_device), torch_device)
