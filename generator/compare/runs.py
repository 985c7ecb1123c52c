"""One search (an Experiment's directory of trial records) as the comparison sees it: when each trial
finished, the epochs it ran, its objective, and the test accuracy of the search's best model.

The same reader serves local runs and records copied off a cluster's model PVC. Times are the
files' modification times (params.json when a trial starts, COMPLETE when it ends), so a copy must
keep them: `tar` does, `kubectl cp` does not."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from katib_nas_contract.best import best_from_records, complete_record
from katib_nas_contract.files import read_json_or
from katib_nas_contract.record import COMPLETE, CURVE, PARAMS, trial_dirs

from ..errors import CompareError


@dataclass(frozen=True)
class Trial:
    name: str
    finished: float  # seconds after the search's first trial started
    epochs: int  # epochs it ran (failed and stopped trials spent compute too)
    value: float | None  # its objective; None when it did not complete


@dataclass(frozen=True)
class SearchRun:
    arm: str
    seed: str
    source: Path
    trials: list[Trial]  # in the order they finished
    best_trial: str
    best_value: float
    test_accuracy: float | None

    @property
    def epochs(self) -> int:
        return sum(t.epochs for t in self.trials)

    @property
    def seconds(self) -> float:
        return max((t.finished for t in self.trials), default=0.0)


def number(value: Any) -> float | None:
    """A metric as the best-trial decision reads it (best_from_records): anything float() takes, if finite."""
    try:
        parsed = float(value)
    except (TypeError, ValueError):
        return None
    return parsed if math.isfinite(parsed) else None


def read_run(experiment_dir: Path, arm: str, seed: str, metric: str, maximize: bool) -> SearchRun:
    if not experiment_dir.is_dir():
        raise CompareError(f"{experiment_dir}: no such directory of trial records")
    records = trial_dirs(experiment_dir)
    if not records:
        raise CompareError(
            f"{experiment_dir}: no trial records (*/{PARAMS}); give an Experiment's directory from the model "
            "volume (one folder per trial)"
        )
    started = min((r / PARAMS).stat().st_mtime for r in records)
    trials = []
    for record in records:
        metrics = complete_record(experiment_dir, record.name)
        curve = read_json_or(record / CURVE, [])
        ran = number(metrics.get("epochs_run")) if isinstance(metrics, dict) else None
        epochs = int(ran) if ran is not None else len(curve) if isinstance(curve, list) else 0
        end = next(record / n for n in (COMPLETE, CURVE, PARAMS) if (record / n).is_file())
        value = number(metrics.get(metric)) if isinstance(metrics, dict) else None
        trials.append(Trial(record.name, end.stat().st_mtime - started, epochs, value))
    trials.sort(key=lambda t: (t.finished, t.name))
    best = best_from_records(experiment_dir, metric, "maximize" if maximize else "minimize")
    if best is None:
        raise CompareError(
            f"{experiment_dir}: no complete trial with {metric} in its metrics.json; the search must finish a "
            "trial before it can be compared"
        )
    final = complete_record(experiment_dir, best.trial)
    test = number(final.get("test_accuracy")) if isinstance(final, dict) else None
    return SearchRun(arm, seed, experiment_dir, trials, best.trial, best.value, test)
