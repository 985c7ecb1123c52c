"""PyTorch files of the trial record (checkpoint and weights); the record itself is the contract's."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from katib_nas_contract.files import atomic_write


def save_torch(path: Path, payload: Any) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write(path, buffer.getvalue())
