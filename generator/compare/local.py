"""Run every arm for every seed on this machine with the local runner, one search after another (each
uses the cores the way `katib-nas run --local` does), and read each back from its trial records."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from ..errors import CompareError, LocalRunError, ValuesError
from ..local.plan import Plan, plan
from ..local.progress import Progress
from ..local.runner import LocalRunner
from ..outputs import atomic_write, make_dirs
from ..validate import Report, validate_data
from ..yamlio import InputFileError, read_yaml_file
from .arms import Arm, arm_values
from .runs import SearchRun, read_run

VALUES = "values.yaml"  # each search's own values, beside its records: what it ran, and a guard on reuse


@dataclass(frozen=True)
class Search:
    arm: Arm
    seed: int
    values: dict[str, Any]
    plan: Plan
    model_root: Path


def prepare(source: Path, report: Report, arms: list[Arm], seeds: int, out: Path, release: str) -> list[Search]:
    """Every search's values, validated before anything runs: a mistake stops the comparison before it
    spends any compute. A folder that holds a search of other values is refused, not mixed in."""
    assert report.profile is not None
    searches, problems = [], []
    for arm in arms:
        for seed in range(1, seeds + 1):
            values = arm_values(report.raw, arm, seed, report.profile.suggestionServices)
            checked = validate_data(values, f"{source} [{arm.label}, seed {seed}]", source.parent, release)
            problems += checked.errors
            if checked.errors:
                continue
            root = out / "runs" / arm.label / f"seed-{seed}"
            earlier = root / VALUES
            if _holds_other_values(earlier, values):
                raise CompareError(
                    f"{root}: holds a search of other values (another values file or arm); use another --out "
                    "or delete that folder"
                )
            searches.append(Search(arm, seed, values, plan(checked, release), root))
    if problems:
        raise ValuesError(problems)
    return searches


def _holds_other_values(path: Path, values: dict[str, Any]) -> bool:
    """Whether an earlier search's values file is there and says other values (or cannot be read)."""
    try:
        return path.exists() and read_yaml_file(path, "") != values
    except (OSError, InputFileError):  # Path.exists raises on a folder it may not search
        return True


class _Labelled(Progress):
    """The runner's progress lines, each naming the search it belongs to."""

    def __init__(self, label: str, stream: TextIO) -> None:
        super().__init__(stream)
        self.label = label

    def event(self, line: str) -> None:
        super().event(f"{self.label}: {line}")


def run_all(
    searches: list[Search], parallel: int | None, metric: str, maximize: bool, stream: TextIO = sys.stderr
) -> list[SearchRun] | None:
    """The searches' results; None when Ctrl-C stopped one (the same command resumes where it stopped:
    finished searches are read back, the interrupted one picks up its trials)."""
    runs = []
    for i, s in enumerate(searches, start=1):
        label = f"[{i}/{len(searches)}] {s.arm.label} seed {s.seed}"
        make_dirs(s.model_root, "--out")
        atomic_write(s.model_root / VALUES, yaml.safe_dump(s.values, sort_keys=False), "--out")
        runner = LocalRunner(s.plan, s.model_root, parallel=parallel, progress=_Labelled(label, stream))
        summary = runner.run()
        if summary.interrupted:
            return None
        if summary.best is None:
            raise LocalRunError(f"{label}: no trial completed; see the logs in {runner.logs}")
        run = read_run(runner.experiment_dir, s.arm.label, str(s.seed), metric, maximize)
        stream.write(
            f"{label}: best {metric}={run.best_value:.4f} ({run.best_trial}), {run.epochs} trial-epochs, "
            f"{run.seconds:.0f}s\n"
        )
        runs.append(run)
    return runs
