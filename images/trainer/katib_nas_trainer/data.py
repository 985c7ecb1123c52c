"""The data set of a trial as in-memory tensors (loading and splits live in `datasets`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from katib_nas_contract import datasets
from katib_nas_contract.datasets import DataError

__all__ = ["DataError", "Dataset", "from_arrays", "load", "load_digits"]


@dataclass
class Dataset:
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    shape: tuple[int, int, int]  # channels, height, width of one sample
    classes: int

    def to(self, device: torch.device) -> Dataset:
        moved = {k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
        return Dataset(self.name, **moved, shape=self.shape, classes=self.classes)


def from_arrays(arrays: datasets.Arrays) -> Dataset:
    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a)

    return Dataset(
        arrays.name,
        tensor(arrays.x_train),
        tensor(arrays.y_train),
        tensor(arrays.x_val),
        tensor(arrays.y_val),
        tensor(arrays.x_test),
        tensor(arrays.y_test),
        arrays.shape,
        arrays.classes,
    )


def load_digits() -> Dataset:
    return from_arrays(datasets.load_digits())


def load(dataset: str, data_dir: Path, base_dir: Path) -> Dataset:
    return from_arrays(datasets.load(dataset, data_dir, base_dir))
