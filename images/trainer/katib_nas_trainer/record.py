"""The trial record under <model root>/<experiment>/<trial>/. Every file is written atomically
(temp file in the same directory, fsync, rename); COMPLETE is written last, so a record without it
is never taken for a finished model."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch

from .files import atomic_write

COMPLETE = "COMPLETE"
FILES = ("params.json", "status.json", "curve.json", "checkpoint.pt", "weights.pt", "model.onnx", "metrics.json")


def write_json(path: Path, payload: Any) -> None:
    atomic_write(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())


def save_torch(path: Path, payload: Any) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write(path, buffer.getvalue())


class TrialRecord:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / name

    @property
    def complete(self) -> bool:
        return self.path(COMPLETE).is_file()

    def status(self, state: str, **extra: Any) -> None:
        write_json(self.path("status.json"), {"state": state, **extra})

    def mark_complete(self) -> None:
        atomic_write(self.path(COMPLETE), b"")

    def start_over(self) -> None:
        """A record from other parameters (or a stale COMPLETE) must not mix with this run."""
        self.path(COMPLETE).unlink(missing_ok=True)
        for name in FILES:
            self.path(name).unlink(missing_ok=True)
