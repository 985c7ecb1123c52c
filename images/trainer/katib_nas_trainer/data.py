"""The data set of a trial as in-memory tensors (loading and splits live in the contract's `datasets`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from katib_nas_contract.datasets import Arrays


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


def from_arrays(arrays: Arrays) -> Dataset:
    splits = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
    tensors = {k: torch.from_numpy(getattr(arrays, k)) for k in splits}
    return Dataset(arrays.name, **tensors, shape=arrays.shape, classes=arrays.classes)
