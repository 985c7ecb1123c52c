"""Trainer benchmarks: digits test accuracy of a reference MLP and CNN (mean over seeds), and the
time of one MNIST-sized epoch (60k x 784, synthetic) of an MLP on one CPU core (and on CUDA when
one is visible). Prints figures and their ratio to the goals."""

from __future__ import annotations

import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from katib_nas_contract.datasets import _build
from katib_nas_contract.files import read_json
from katib_nas_contract.flags import SEARCH_FLAGS
from katib_nas_contract.record import METRICS
from katib_nas_trainer.cli import main as trainer_main
from katib_nas_trainer.data import from_arrays
from katib_nas_trainer.model import build_model, build_optimizer
from katib_nas_trainer.train import StopFlag, train_epoch

SEEDS = (1, 2, 3)
REFERENCE = {
    # (goal test accuracy, flags)
    "digits MLP": (
        0.975,
        "--arch mlp --augment shift --units 1024 --num-layers 2 --dropout 0.3 --lr 0.002 "
        "--batch-size 32 --epochs 100 --optimizer adamw --weight-decay 0.01 --patience 1000",
    ),
    "digits CNN": (
        0.985,
        "--arch cnn --augment shift --channels 32 --conv-blocks 2 --kernel-size 3 --units 128 "
        "--dropout 0.3 --lr 0.002 --batch-size 32 --epochs 100 --optimizer adamw "
        "--weight-decay 0.01 --patience 1000",
    ),
}
EPOCH_GOALS = {"cpu": 1.0, "cuda": 0.05}


def digits_accuracy(flags: str, seed: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = trainer_main([*flags.split(), "--seed", str(seed), "--output-dir", tmp, "--trial-name", "t"])
        assert code == 0
        return float(read_json(Path(tmp) / "default" / "t" / METRICS)["test_accuracy"])


def epoch_seconds(device: torch.device, batch_size: int) -> float:
    """Median of 3 epochs of the trainer's defaults (784-128-128-10 MLP, Adam, dropout 0.1)."""
    rng = np.random.default_rng(0)
    x = rng.random((60000 + 6667, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, len(x))
    data = from_arrays(_build("synthetic-mnist", x, y, x[:1000], y[:1000])).to(device)
    params = {k: v.default for k, v in SEARCH_FLAGS.items()} | {"units": 128, "num-layers": 2}
    model = build_model(params, data.shape, data.classes, data.x_train).to(device)
    optimizer = build_optimizer(params, model)
    generator = torch.Generator().manual_seed(0)
    train_epoch(model, optimizer, data, batch_size, generator, device, StopFlag(), max_batches=50)  # warm-up
    samples = []
    for _ in range(3):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        train_epoch(model, optimizer, data, batch_size, generator, device, StopFlag())
        if device.type == "cuda":
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> int:
    print(f"{'benchmark':<36} {'figure':>10} {'goal':>8} {'ratio':>7}")
    for name, (goal, flags) in REFERENCE.items():
        accuracies = [digits_accuracy(flags, seed) for seed in SEEDS]
        mean = statistics.mean(accuracies)
        print(
            f"{name + ' test accuracy (mean)':<36} {mean:>10.4f} {goal:>8.3f} {mean / goal:>7.3f}"
            f"   seeds {SEEDS}: {', '.join(f'{a:.4f}' for a in accuracies)}"
        )
    torch.set_num_threads(1)
    for batch_size in (256, 128):
        seconds = epoch_seconds(torch.device("cpu"), batch_size)
        label = f"MNIST-sized MLP epoch, 1 core, b{batch_size}"
        print(
            f"{label:<36} {seconds:>9.3f}s {EPOCH_GOALS['cpu']:>7.2f}s {seconds / EPOCH_GOALS['cpu']:>7.2f}"
            f"   ({60000 / seconds:,.0f} samples/s)"
        )
    if torch.cuda.is_available():
        torch.set_num_threads(4)
        seconds = epoch_seconds(torch.device("cuda"), 256)
        print(
            f"{'MNIST-sized MLP epoch, CUDA, b256':<36} {seconds:>9.3f}s {EPOCH_GOALS['cuda']:>7.2f}s "
            f"{seconds / EPOCH_GOALS['cuda']:>7.2f}   ({torch.cuda.get_device_name()})"
        )
    else:
        print("MNIST-sized MLP epoch, CUDA: not measured (no CUDA device visible)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
