"""Which trial is best, and the pointer that says so.

One place decides the best trial: from Katib's `status.currentOptimalTrial` on a cluster, from the
trial records on disk elsewhere. The decision is published as `<experiment dir>/best.json`,
written atomically and only ever naming a trial whose record is complete, so a reader never
follows it to a half-written model.

With a serving budget (the chart's `promotion.budget`) the best trial is the best complete record
whose measured serving cost fits; Katib's optimal trial knows nothing of serving cost, so the records
decide on a cluster too. best.json then names the budget and the trials it ruled out, and when no
trial fits it says so with `"trial": null` rather than keep naming a model over the budget.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from .files import atomic_write, read_json_or
from .record import METRICS, MODEL, POINTER, SERVING_COST, is_complete
from .serving_cost import Budget

Goal = Literal["maximize", "minimize"]
NO_BUDGET = Budget()
# The objectives a record's metrics.json holds (the best epoch's), which promotion from records compares.
RECORD_OBJECTIVES = ("accuracy", "loss")


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


@dataclass(frozen=True)
class RuledOut:
    """A complete trial the serving budget kept from promotion, and why."""

    trial: str
    value: float
    why: str


@dataclass(frozen=True)
class Choice:
    """The best trial within the budget (None: none fits, or none is complete) and the trials the
    budget ruled out, best objective first."""

    best: Best | None
    metric: str = "accuracy"
    goal: Goal = "maximize"
    budget: Budget = NO_BUDGET
    ruled_out: tuple[RuledOut, ...] = ()

    @property
    def none_fits(self) -> bool:
        return self.best is None and bool(self.ruled_out)

    def overtaken(self) -> tuple[RuledOut, ...]:
        """The ruled-out trials whose objective beats the chosen one's: where the budget changed the choice."""
        best = self.best
        if best is None:
            return self.ruled_out
        return tuple(
            r for r in self.ruled_out if (r.value > best.value if self.goal == "maximize" else r.value < best.value)
        )


def choose(
    experiment_dir: Path, metric: str = "accuracy", goal: Goal = "maximize", budget: Budget = NO_BUDGET
) -> Choice:
    """Best complete trial on disk within the budget. Failed, interrupted and half-written trials have no
    COMPLETE and are skipped; early-stopped ones are complete and compete. Ties go to the trial name
    that sorts first, so every reader picks the same one."""
    candidates: list[tuple[float, str]] = []
    ruled_out: list[tuple[float, str, str]] = []
    if not experiment_dir.is_dir():
        return Choice(None, metric, goal, budget)
    for record in experiment_dir.iterdir():
        metrics = complete_record(experiment_dir, record.name) if record.is_dir() else None
        value = _number(metrics.get(metric)) if metrics else None
        if value is None:
            continue
        key = -value if goal == "maximize" else value
        why = budget.violations(read_json_or(record / SERVING_COST, None))
        if why:
            ruled_out.append((key, record.name, "; ".join(why)))
        else:
            candidates.append((key, record.name))
    out = tuple(RuledOut(trial, -key if goal == "maximize" else key, why) for key, trial, why in sorted(ruled_out))
    if not candidates:
        return Choice(None, metric, goal, budget, out)
    key, trial = min(candidates)
    return Choice(Best(trial, metric, -key if goal == "maximize" else key, "records"), metric, goal, budget, out)


def best_from_records(experiment_dir: Path, metric: str = "accuracy", goal: Goal = "maximize") -> Best | None:
    """Best complete trial on disk, with no budget."""
    return choose(experiment_dir, metric, goal).best


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


def no_fit_reason(pointer: Any) -> str | None:
    """Why a pointer names no model, when it says that no trial fits the serving budget (publish_none_fits)."""
    if isinstance(pointer, dict) and pointer.get("trial", "") is None and isinstance(pointer.get("reason"), str):
        return str(pointer["reason"])
    return None


def read_pointer(experiment_dir: Path) -> Any:
    """best.json as JSON, or None when there is none. Readers check its shape: a hand-edited or
    damaged pointer may be any JSON value."""
    return read_json_or(experiment_dir / POINTER, None)


def publish(experiment_dir: Path, best: Best, choice: Choice | None = None) -> bool:
    """Point best.json at `best` (temp file, fsync, rename); False when it already does. `choice` (a
    budgeted decision) adds the budget and the trials it ruled out."""
    budget = _budget_doc(choice)
    current = read_pointer(experiment_dir)
    if (
        isinstance(current, dict)
        and current.get("trial") == best.trial
        and current.get("value") == best.value
        and current.get("budget") == budget
    ):
        return False
    if complete_record(experiment_dir, best.trial) is None:
        raise ValueError(f"refusing to publish {best.trial}: its record is not complete")
    payload = {**asdict(best), "model": best.model, "published_at": time.time()}
    if choice is not None and budget is not None:
        payload |= {"budget": budget, "ruled_out": [asdict(r) for r in choice.ruled_out]}
    atomic_write(experiment_dir / POINTER, json.dumps(payload, indent=2, sort_keys=True).encode())
    return True


def publish_none_fits(experiment_dir: Path, choice: Choice) -> bool:
    """Say in best.json that no complete trial fits the budget (`"trial": null` and why), so no reader
    keeps following a pointer to a model over it; False when it already says so."""
    reason = none_fits_reason(choice)
    current = read_pointer(experiment_dir)
    if isinstance(current, dict) and current.get("trial", "") is None and current.get("reason") == reason:
        return False
    payload = {
        "trial": None,
        "metric": choice.metric,
        "reason": reason,
        "budget": _budget_doc(choice),
        "ruled_out": [asdict(r) for r in choice.ruled_out],
        "published_at": time.time(),
    }
    atomic_write(experiment_dir / POINTER, json.dumps(payload, indent=2, sort_keys=True).encode())
    return True


def none_fits_reason(choice: Choice) -> str:
    first = choice.ruled_out[0]
    return (
        f"no complete trial fits the serving budget ({choice.budget.describe()}): {len(choice.ruled_out)} ruled out, "
        f"the best {first.trial} ({choice.metric}={first.value:g}: {first.why}); raise promotion.budget or search "
        "smaller models"
    )


def publish_choice(experiment_dir: Path, choice: Choice) -> list[str]:
    """Publish a records decision: its best trial, or that no trial fits the budget. The lines to log;
    none when best.json already said so."""
    best = choice.best
    if best is not None:
        if not publish(experiment_dir, best, choice):
            return []
        said = f"best model: {best.trial} ({best.metric}={best.value:g}, from {best.source})"
        return [said, ruled_out_line(choice)] if choice.budget.is_set else [said]
    if choice.none_fits and publish_none_fits(experiment_dir, choice):
        return [none_fits_reason(choice)]
    return []


def ruled_out_line(choice: Choice) -> str:
    """Which better trials the budget kept out of promotion (the chosen one is the best that fits)."""
    overtaken = choice.overtaken()
    named = "; ".join(f"{r.trial} ({choice.metric}={r.value:g}: {r.why})" for r in overtaken[:5])
    more = f"; and {len(overtaken) - 5} more" if len(overtaken) > 5 else ""
    return (
        f"within the serving budget ({choice.budget.describe()}); "
        + (f"ruled out as better but over it: {named}{more}" if overtaken else "no better trial was ruled out")
        + (f" ({len(choice.ruled_out)} over it in all, listed in best.json)" if choice.ruled_out else "")
    )


def _budget_doc(choice: Choice | None) -> dict[str, Any] | None:
    if choice is None or not choice.budget.is_set:
        return None
    return {"latency_p99_ms": choice.budget.latency_p99_ms, "model_bytes": choice.budget.model_bytes}


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
