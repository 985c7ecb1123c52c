"""Early-stopping rules that trials apply to themselves from the per-epoch curves every trial writes
next to its record on the shared model volume. They need no Katib service, so they work the same
on any Katib version and in the local runner. Every trainer (PyTorch, Keras), the local runner and
the benchmarks use these functions.

- `median`: at every epoch t >= start_step, stop when this trial's running average of the objective
  over epochs 1..t is worse than the median of the other trials' running averages over their
  epochs 1..t (among the trials that reached t, once at least `min_trials` have).
- `successive-halving` (asynchronous, as in ASHA): rungs at start_step * eta**k epochs; at a rung a
  trial goes on only if its best value so far is in the top 1/eta of the trials that reached that
  rung (once at least max(min_trials, eta) have).
- `katib_medianstop_*`: Katib's medianstop as its service and metrics collector implement it, for
  comparison in the benchmarks (the chart renders Katib's own for algorithmName=medianstop).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .record import CURVE

RULES = ("none", "median", "successive-halving")


@dataclass(frozen=True)
class Rule:
    name: str = "none"
    metric: str = "accuracy"
    maximize: bool = True
    start_step: int = 4
    min_trials: int = 3
    eta: int = 3
    # katib-nas replay: the epoch the rule stopped the recorded trial at. The decision came from the
    # peers' curves as they stood then, which no later state of the experiment holds, so it is replayed.
    replay_epoch: int | None = None


def _worse(a: float, b: float, maximize: bool) -> bool:
    return a < b if maximize else a > b


def best_so_far(curve: Sequence[float], t: int, maximize: bool) -> float:
    return max(curve[:t]) if maximize else min(curve[:t])


def median_stop(mine: Sequence[float], others: Sequence[Sequence[float]], rule: Rule) -> bool:
    t = len(mine)
    if t < rule.start_step:
        return False
    peers = [statistics.fmean(c[:t]) for c in others if len(c) >= t]
    if len(peers) < rule.min_trials:
        return False
    return _worse(statistics.fmean(mine), statistics.median(peers), rule.maximize)


def is_rung(t: int, rule: Rule) -> bool:
    rung = rule.start_step
    while rung < t:
        rung *= rule.eta
    return rung == t


def halving_stop(mine: Sequence[float], others: Sequence[Sequence[float]], rule: Rule) -> bool:
    t = len(mine)
    if t < rule.start_step or not is_rung(t, rule):
        return False
    peers = [best_so_far(c, t, rule.maximize) for c in others if len(c) >= t]
    if len(peers) + 1 < max(rule.min_trials, rule.eta):
        return False
    keep = max(1, (len(peers) + 1) // rule.eta)
    value = best_so_far(mine, t, rule.maximize)
    better = sum(1 for p in peers if _worse(value, p, rule.maximize))  # ties do not count against us
    return better >= keep


def should_stop(mine: Sequence[float], others: Sequence[Sequence[float]], rule: Rule) -> bool:
    if rule.replay_epoch is not None:
        return rule.name != "none" and len(mine) >= rule.replay_epoch
    if rule.name == "median":
        return median_stop(mine, others, rule)
    if rule.name == "successive-halving":
        return halving_stop(mine, others, rule)
    return False


def katib_medianstop_target(succeeded: Sequence[Sequence[float]], start_step: int, min_trials: int) -> float | None:
    """The value Katib's medianstop service hands a new trial's collector: the *mean*, over trials that
    succeeded (ran to the end) before the trial was created, of each one's average of its first
    `start_step` values; none until `min_trials` have succeeded."""
    if len(succeeded) < min_trials:
        return None
    return statistics.fmean(statistics.fmean(c[:start_step]) for c in succeeded)


def katib_medianstop_stop(mine: Sequence[float], target: float | None, maximize: bool, start_step: int) -> bool:
    """Katib's collector: from the start_step-th report on, stop when the best value so far is worse
    than the target fixed when the trial was created."""
    if target is None or len(mine) < start_step:
        return False
    return _worse(best_so_far(mine, len(mine), maximize), target, maximize)


def peer_curves(experiment_dir: Path, me: str, metric: str) -> list[list[float]]:
    """The objective curves of the other trials of the experiment (written atomically, so whole)."""
    curves = []
    for path in experiment_dir.glob(f"*/{CURVE}"):
        if path.parent.name == me:
            continue
        try:
            points = json.loads(path.read_text(encoding="utf-8"))
            curves.append([float(p[metric]) for p in points])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return curves
