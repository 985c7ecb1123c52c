"""Which trial is best, and the pointer that says so.

One place decides the best trial: from Katib's `status.currentOptimalTrial` on a cluster, from the
trial records on disk elsewhere. The decision is published as `<experiment dir>/best.json`,
written atomically and only ever naming a trial whose record is complete, so a reader never
follows it to a half-written model.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from .files import atomic_write, read_json_or
from .record import METRICS, MODEL, POINTER, is_complete

Goal = Literal["maximize", "minimize"]


@dataclass(frozen=True)
class Best:
    trial: str
    metric: str
    value: float
    source: str  # "katib" or "records"

    @property
    def model(self) -> str:
        return f"{self.trial}/{MODEL}"


def complete_record(experiment_dir: Path, trial: str) -> dict[str, Any] | None:
    """The final metrics of a trial whose record is complete (COMPLETE written last), else None."""
    record = experiment_dir / trial
    if not is_complete(record):
        return None
    metrics: dict[str, Any] | None = read_json_or(record / METRICS, None)
    return metrics


def best_from_records(experiment_dir: Path, metric: str = "accuracy", goal: Goal = "maximize") -> Best | None:
    """Best complete trial on disk. Failed, interrupted and half-written trials have no COMPLETE and are
    skipped; early-stopped ones are complete and compete. Ties go to the trial name that sorts first,
    so every reader picks the same one."""
    candidates: list[tuple[float, str]] = []
    if not experiment_dir.is_dir():
        return None
    for record in experiment_dir.iterdir():
        metrics = complete_record(experiment_dir, record.name) if record.is_dir() else None
        value = _number(metrics.get(metric)) if metrics else None
        if value is not None:
            candidates.append((-value if goal == "maximize" else value, record.name))
    if not candidates:
        return None
    key, trial = min(candidates)
    return Best(trial, metric, -key if goal == "maximize" else key, "records")


def best_from_experiment(experiment: dict[str, Any], experiment_dir: Path) -> Best | None:
    """Katib's current optimal trial, once its record on the PVC is complete."""
    spec = experiment.get("spec") or {}
    metric = (spec.get("objective") or {}).get("objectiveMetricName", "accuracy")
    optimal = (experiment.get("status") or {}).get("currentOptimalTrial") or {}
    trial = optimal.get("bestTrialName")
    if not trial or complete_record(experiment_dir, trial) is None:
        return None
    observed = {m.get("name"): m for m in (optimal.get("observation") or {}).get("metrics") or []}
    goal = (spec.get("objective") or {}).get("type", "maximize")
    reported = observed.get(metric, {})
    value = _number(reported.get("max" if goal == "maximize" else "min", reported.get("latest")))
    if value is None:
        return None
    return Best(trial, metric, value, "katib")


def experiment_finished(experiment: dict[str, Any]) -> bool:
    conditions = (experiment.get("status") or {}).get("conditions") or []
    return any(c.get("type") in ("Succeeded", "Failed") and c.get("status") == "True" for c in conditions)


def read_pointer(experiment_dir: Path) -> Any:
    """best.json as JSON, or None when there is none. Readers check its shape: a hand-edited or
    damaged pointer may be any JSON value."""
    return read_json_or(experiment_dir / POINTER, None)


def publish(experiment_dir: Path, best: Best) -> bool:
    """Point best.json at `best` (temp file, fsync, rename); False when it already does."""
    current = read_pointer(experiment_dir)
    if isinstance(current, dict) and current.get("trial") == best.trial and current.get("value") == best.value:
        return False
    if complete_record(experiment_dir, best.trial) is None:
        raise ValueError(f"refusing to publish {best.trial}: its record is not complete")
    payload = {**asdict(best), "model": best.model, "published_at": time.time()}
    atomic_write(experiment_dir / POINTER, json.dumps(payload, indent=2, sort_keys=True).encode())
    return True


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
