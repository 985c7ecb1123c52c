"""Trainer benchmarks, the PyTorch and Keras trainers side by side: digits test accuracy of a reference
MLP and CNN (mean over seeds, the same flags for both), and the time of one MNIST-sized epoch (60k x
784, synthetic) of an MLP on one CPU core (and PyTorch on CUDA when one is visible). Prints the
figures, the Keras - PyTorch differences and their goals."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from katib_nas_contract.datasets import Arrays, _build
from katib_nas_contract.files import read_json
from katib_nas_contract.flags import SEARCH_FLAGS, TRAINERS
from katib_nas_contract.record import METRICS
from katib_nas_contract.trial import Run, StopFlag
from katib_nas_trainer.data import from_arrays
from katib_nas_trainer.train import TorchTrainer

SEEDS = (1, 2, 3)
REFERENCE = {
    # (goal test accuracy of the PyTorch trainer, flags)
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
ACCURACY_GAP_GOAL = 0.005  # Keras within 0.5 percentage points of PyTorch
EPOCH_RATIO_GOAL = 1.5  # Keras's one-core epoch within 1.5x of PyTorch's


def digits_accuracy(framework: str, flags: str, seed: int) -> float:
    """Test accuracy of one trial of the framework's trainer, run as a trial pod runs it."""
    _, *module = TRAINERS[framework].command
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, "-W", "ignore", *module, *flags.split(), "--seed", str(seed)]
        argv += ["--output-dir", tmp, "--trial-name", "t"]
        subprocess.run(argv, check=True, capture_output=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        return float(read_json(Path(tmp) / "default" / "t" / METRICS)["test_accuracy"])


def synthetic_mnist() -> Arrays:
    rng = np.random.default_rng(0)
    x = rng.random((60000 + 6667, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, len(x))
    return _build("synthetic-mnist", x, y, x[:1000], y[:1000])


# The trainers' defaults with a 784-128-128-10 MLP (Adam, dropout 0.1).
EPOCH_PARAMS = {k: v.default for k, v in SEARCH_FLAGS.items()} | {"units": 128, "num-layers": 2}


def torch_epoch_seconds(device: torch.device, batch_size: int) -> float:
    """Median of 3 epochs after a warm-up of 50 batches."""
    trainer = TorchTrainer(Run(EPOCH_PARAMS, 0, 1, 0.0, None), from_arrays(synthetic_mnist()).to(device), device)
    trainer.train_epoch(batch_size, StopFlag(), max_batches=50)  # warm-up
    samples = []
    for _ in range(3):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        trainer.train_epoch(batch_size, StopFlag())
        if device.type == "cuda":
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def keras_epoch_seconds(batch_size: int) -> float:
    """The same measurement for the Keras trainer, in its own process (TensorFlow's thread pools are
    fixed at start-up): one intra-op and one inter-op thread, as the trainer sets them for one CPU."""
    argv = [sys.executable, "-W", "ignore", __file__, "--keras-epoch", str(batch_size)]
    out = subprocess.run(
        argv, check=True, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    )
    return float(out.stdout.split()[-1])


def _keras_epoch(batch_size: int) -> None:
    from katib_nas_keras.cli import configure

    configure(1, "cpu", 0)
    from katib_nas_keras.train import KerasTrainer

    trainer = KerasTrainer(Run(EPOCH_PARAMS, 0, 1, 0.0, None), synthetic_mnist(), "cpu")
    trainer.train_epoch(batch_size, StopFlag(), max_batches=50)  # warm-up (and tracing)
    samples = []
    for _ in range(3):
        start = time.perf_counter()
        trainer.train_epoch(batch_size, StopFlag())
        samples.append(time.perf_counter() - start)
    print(statistics.median(samples))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--part", choices=("all", "accuracy", "epoch"), default="all")
    parser.add_argument("--seeds", type=int, default=len(SEEDS), help=f"accuracy seeds from {SEEDS} (default: all)")
    parser.add_argument("--arch", choices=("all", "mlp", "cnn"), default="all", help="accuracy reference models")
    args = parser.parse_args(argv)
    seeds = SEEDS[: args.seeds]
    print(f"{'benchmark':<40} {'pytorch':>9} {'keras':>9} {'keras vs pytorch':>17}   goal")
    for name, (goal, flags) in REFERENCE.items() if args.part in ("all", "accuracy") else ():
        if args.arch not in ("all", name.split()[-1].lower()):  # "digits MLP" -> mlp
            continue
        runs = {fw: [digits_accuracy(fw, flags, seed) for seed in seeds] for fw in ("pytorch", "keras")}
        mean = {fw: statistics.mean(a) for fw, a in runs.items()}
        gap = mean["keras"] - mean["pytorch"]
        print(
            f"{name + ' test accuracy (mean)':<40} {mean['pytorch']:>9.4f} {mean['keras']:>9.4f} "
            f"{gap * 100:>+14.2f} pp   pytorch >= {goal:.3f}, |gap| <= {ACCURACY_GAP_GOAL * 100:.1f} pp"
        )
        for fw, accuracies in runs.items():
            print(f"{'':<40} {fw} seeds {seeds}: {', '.join(f'{a:.4f}' for a in accuracies)}")
    if args.part == "accuracy":
        return 0
    torch.set_num_threads(1)
    for batch_size in (256, 128):
        torch_s = torch_epoch_seconds(torch.device("cpu"), batch_size)
        keras_s = keras_epoch_seconds(batch_size)
        label = f"MNIST-sized MLP epoch, 1 core, b{batch_size}"
        print(
            f"{label:<40} {torch_s:>8.3f}s {keras_s:>8.3f}s {keras_s / torch_s:>16.2f}x   "
            f"pytorch <= {EPOCH_GOALS['cpu']:.2f}s, keras <= {EPOCH_RATIO_GOAL}x"
        )
    if torch.cuda.is_available():
        torch.set_num_threads(4)
        seconds = torch_epoch_seconds(torch.device("cuda"), 256)
        print(
            f"{'MNIST-sized MLP epoch, CUDA, b256':<40} {seconds:>8.3f}s {'-':>9} {'':>17}   "
            f"pytorch <= {EPOCH_GOALS['cuda']:.2f}s ({torch.cuda.get_device_name()})"
        )
    else:
        print("MNIST-sized MLP epoch, CUDA: not measured (no CUDA device visible)")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--keras-epoch"]:
        _keras_epoch(int(sys.argv[2]))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
