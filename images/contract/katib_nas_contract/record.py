"""The trial record under <model root>/<experiment>/<trial>/, and the names of its files.

Every file is written atomically (temp file in the same directory, fsync, rename); COMPLETE is
written last, so a record without it is never taken for a finished model. These constants are the
only place the names are spelled: trainers, server, batch job, local runner and report use them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .files import atomic_write, read_json_or, write_json

COMPLETE = "COMPLETE"  # empty marker, written last
PARAMS = "params.json"  # {"params", "seed", "epochs", "dataset"}: a rerun resumes only a record of the same run
STATUS = "status.json"  # {"state": running|terminated|failed|completed|early_stopped, ...}
CURVE = "curve.json"  # [{"epoch", "accuracy", "loss", "train_accuracy", "train_loss"}, ...]: read by peers
METRICS = "metrics.json"  # final metrics of the best epoch; the objective is read from here
MODEL = "model.onnx"  # the best epoch's model, input [batch, C, H, W], output logits
SERVING_COST = "serving_cost.json"  # MODEL's batch-1 latency p50/p99 on one thread, parameters, bytes (serving_cost.py)
PROVENANCE = "provenance.json"  # versions, device, seed, data digest, chart and image: written at a fresh start
IMAGE = "image.json"  # the trial pod's image digest, added by the extraction pod (provenance.image_doc)
POINTER = "best.json"  # next to the trial records: which trial is best
DATASETS_DIR = ".datasets"  # download cache under the model root

# Framework files: a checkpoint every epoch (resume) and the best epoch's weights in the framework's
# own format.
CHECKPOINT = {"pytorch": "checkpoint.pt", "keras": "checkpoint.npz"}
WEIGHTS = {"pytorch": "weights.pt", "keras": "model.weights.h5"}
FILES = (
    PARAMS,
    PROVENANCE,
    IMAGE,
    STATUS,
    CURVE,
    METRICS,
    MODEL,
    SERVING_COST,
    *CHECKPOINT.values(),
    *WEIGHTS.values(),
)


class TrialRecord:
    def __init__(self, root: Path, provenance: dict[str, Any] | None = None) -> None:
        """`provenance` (provenance.gather) is written when the trial starts afresh, not on a resume."""
        self.root = root
        self.provenance = provenance

    def path(self, name: str) -> Path:
        return self.root / name

    @property
    def complete(self) -> bool:
        return self.path(COMPLETE).is_file()

    def staging(self, name: str) -> Path:
        """Where a file that a library writes (not atomic_write) is made before its rename; it keeps the
        name's ending, which some writers require (Keras: `.weights.h5`)."""
        return self.path(f".tmp-{name}")

    def write(self, name: str, payload: Any) -> None:
        write_json(self.path(name), payload)

    def read(self, name: str, default: Any = None) -> Any:
        return read_json_or(self.path(name), default)

    def status(self, state: str, **extra: Any) -> None:
        self.write(STATUS, {"state": state, **extra})

    def mark_complete(self) -> None:
        atomic_write(self.path(COMPLETE), b"")

    def start_over(self) -> None:
        """A record from other parameters (or a stale COMPLETE) must not mix with this run; this run's
        provenance is its first file."""
        self.path(COMPLETE).unlink(missing_ok=True)
        for name in FILES:
            self.path(name).unlink(missing_ok=True)
        if self.provenance is not None:
            self.write(PROVENANCE, self.provenance)


def is_complete(record: Path) -> bool:
    """A finished trial: COMPLETE (written last) and its model are there."""
    return (record / COMPLETE).is_file() and (record / MODEL).is_file()


def trial_dirs(experiment_dir: Path) -> list[Path]:
    """Every trial record an experiment directory holds (one with params.json), sorted by name."""
    return sorted(p.parent for p in experiment_dir.glob(f"*/{PARAMS}"))
