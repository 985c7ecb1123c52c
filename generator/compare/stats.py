"""Figures of a comparison: best-so-far curves, their median and band over seeds, time to a target
objective, and the winner with its margin against the spread over seeds."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from .runs import SearchRun


@dataclass(frozen=True)
class Step:
    epochs: int  # trial-epochs of the trials finished so far
    seconds: float  # when this trial finished, after the search's first trial started
    best: float  # best objective so far


def better(a: float, b: float, maximize: bool) -> bool:
    return a > b if maximize else a < b


def best_so_far(run: SearchRun, maximize: bool) -> list[Step]:
    """One step per finished trial, in finishing order. A trial's epochs count when it ends, whether it
    completed, was stopped or failed: compute spent is compute spent."""
    steps: list[Step] = []
    epochs, best = 0, None
    for t in run.trials:
        epochs += t.epochs
        if t.value is not None and (best is None or better(t.value, best, maximize)):
            best = t.value
        if best is not None:
            steps.append(Step(epochs, t.finished, best))
    return steps


def value_at(steps: list[Step], x: float, axis: str) -> float | None:
    """The best-so-far at x trial-epochs (axis "epochs") or seconds; None before the first result. A
    finished search keeps its final best."""
    found = None
    for s in steps:
        if getattr(s, axis) > x:
            break
        found = s.best
    return found


@dataclass(frozen=True)
class Band:
    x: list[float]
    median: list[float]
    low: list[float]  # the worst seed at x
    high: list[float]  # the best seed at x


def band(runs: list[SearchRun], maximize: bool, axis: str, points: int = 200) -> Band:
    """Median and min-max over the arm's seeds, from where every seed has a result to where the last ends."""
    curves = [best_so_far(r, maximize) for r in runs]
    start = max(getattr(c[0], axis) for c in curves)
    end = max(getattr(c[-1], axis) for c in curves)
    xs = [start + (end - start) * i / (points - 1) for i in range(points)] if end > start else [start]
    out = Band([], [], [], [])
    for x in xs:
        values = [v for c in curves if (v := value_at(c, x, axis)) is not None]
        out.x.append(x)
        out.median.append(statistics.median(values))
        out.low.append(min(values) if maximize else max(values))
        out.high.append(max(values) if maximize else min(values))
    return out


@dataclass(frozen=True)
class Reached:
    epochs: int
    seconds: float


def time_to_target(run: SearchRun, target: float, maximize: bool) -> Reached | None:
    for s in best_so_far(run, maximize):
        if s.best == target or better(s.best, target, maximize):
            return Reached(s.epochs, s.seconds)
    return None


def default_target(runs: list[SearchRun]) -> float:
    """The median of every search's final best: about half the searches reach it, so it tells the
    quick from the slow without being out of reach."""
    return statistics.median(r.best_value for r in runs)


@dataclass(frozen=True)
class ArmSummary:
    arm: str
    seeds: int
    finals: list[float]  # each seed's best objective
    tests: list[float]  # each seed's best model's test accuracy (where recorded)
    epochs: list[int]  # trial-epochs each seed spent
    seconds: list[float]  # each seed's wall time
    reached: list[Reached | None]  # each seed's time to the target

    @property
    def final(self) -> float:
        return statistics.median(self.finals)

    @property
    def spread(self) -> float | None:
        """The standard deviation of the final best over seeds (None with one seed)."""
        return statistics.stdev(self.finals) if len(self.finals) > 1 else None

    def to_target(self, axis: str) -> float:
        """Median time to the target over seeds; a seed that never reached it counts as infinitely late,
        so the median is infinite when fewer than half reached it."""
        return statistics.median(math.inf if r is None else float(getattr(r, axis)) for r in self.reached)


def summarize(runs: list[SearchRun], target: float, maximize: bool) -> list[ArmSummary]:
    arms: dict[str, list[SearchRun]] = {}
    for r in runs:
        arms.setdefault(r.arm, []).append(r)
    return [
        ArmSummary(
            arm,
            len(rs),
            [r.best_value for r in rs],
            [r.test_accuracy for r in rs if r.test_accuracy is not None],
            [r.epochs for r in rs],
            [r.seconds for r in rs],
            [time_to_target(r, target, maximize) for r in rs],
        )
        for arm, rs in arms.items()
    ]


@dataclass(frozen=True)
class Verdict:
    winner: str
    runner_up: str | None
    margin: float  # how much better the winner's median final best is than the runner-up's
    spread: float | None  # the larger of the two arms' standard deviations over seeds
    decided_by: str  # "objective"; on equal objectives "trial-epochs to target", or "tie" when those are equal too

    @property
    def clear(self) -> bool:
        """The margin is larger than the scatter of one arm's seeds around their own median."""
        return self.spread is not None and self.margin > self.spread


def verdict(arms: list[ArmSummary], maximize: bool) -> Verdict:
    """The arm with the best median final objective; on equal medians the one with fewer median
    trial-epochs to the target; equal in both, a tie (the arm named first is the one sorting first)."""
    ranked = sorted(arms, key=lambda a: (-a.final if maximize else a.final, a.to_target("epochs"), a.arm))
    first = ranked[0]
    if len(ranked) == 1:
        return Verdict(first.arm, None, 0.0, first.spread, "objective")
    second = ranked[1]
    spreads = [s for s in (first.spread, second.spread) if s is not None]
    margin = abs(first.final - second.final)
    if margin > 0:
        decided_by = "objective"
    elif first.to_target("epochs") < second.to_target("epochs"):
        decided_by = "trial-epochs to target"
    else:
        decided_by = "tie"
    return Verdict(first.arm, second.arm, margin, max(spreads) if spreads else None, decided_by)
