"""Early-stopping benchmark on recorded learning curves of the digits search space.

1. Records (once, cached in out/bench/curves.json) the validation-accuracy curves of 50 trials x 20
   epochs drawn at random from the chart's default search space, each trained to the end.
2. Replays 10 seeded studies: each runs the 50 trials in a seeded order, 2 at a time, one epoch per
   time step, and applies a stopping rule as the trials would see each other's curves live:
   none, Katib's medianstop as Katib implements it, the median of running averages, successive halving.
3. Prints trial-epochs spent and saved, and the best-accuracy regret against no stopping.
Then times the README's main command (`katib-nas run --local values/microk8s.yaml`) on this machine.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna

from generator.local.space import as_flag, search_space
from generator.models import Experiment
from katib_nas_contract.files import read_json
from katib_nas_contract.record import CURVE
from katib_nas_contract.stopping import Rule, katib_medianstop_stop, katib_medianstop_target, should_stop

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "out" / "bench" / "curves.json"
TRIALS, EPOCHS, STUDIES, PARALLEL = 50, 20, 10, 2
START_STEP, MIN_TRIALS, ETA = 4, 3, 3


def record_curves() -> list[list[float]]:
    if CACHE.is_file():
        cached = json.loads(CACHE.read_text())
        if len(cached) >= TRIALS and all(len(c) == EPOCHS for c in cached):
            return [list(map(float, c)) for c in cached]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    experiment = Experiment()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = search_space(experiment.parameters)
    draws = [study.ask(space).params for _ in range(TRIALS)]

    def train(i_params: tuple[int, dict[str, object]]) -> list[float]:
        i, params = i_params
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-W", "ignore", "-m", "katib_nas_trainer", "--dataset=digits", f"--output-dir={tmp}"]
            cmd += [f"--epochs={EPOCHS}", "--patience=1000", "--threads=1", f"--trial-name=t{i}"]
            cmd += [f"--{k}={as_flag(v)}" for k, v in params.items()]
            subprocess.run(cmd, check=True, capture_output=True)
            curve = read_json(next(Path(tmp).glob(f"*/*/{CURVE}")))
        print(f"  recorded trial {i + 1}/{TRIALS}: best accuracy {max(p['accuracy'] for p in curve):.4f}", flush=True)
        return [float(p["accuracy"]) for p in curve]

    print(f"recording {TRIALS} trials x {EPOCHS} epochs of the digits search space (cached in {CACHE})")
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        curves = list(pool.map(train, enumerate(draws)))
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    CACHE.write_text(json.dumps(curves))
    return curves


def replay(curves: list[list[float]], order: list[int], rule: str) -> tuple[int, float]:
    """Trial-epochs spent and the best accuracy found, running `order` PARALLEL at a time."""
    shared = Rule(rule, start_step=START_STEP, min_trials=MIN_TRIALS, eta=ETA)
    seen: dict[int, list[float]] = {}  # what each started trial has reported so far
    succeeded: list[list[float]] = []  # ran to the end (Katib's medianstop only counts these)
    targets: dict[int, float | None] = {}
    queue, running = list(order), list[int]()
    while queue or running:
        while queue and len(running) < PARALLEL:
            trial = queue.pop(0)
            seen[trial] = []
            targets[trial] = katib_medianstop_target(succeeded, START_STEP, MIN_TRIALS)  # fixed at creation
            running.append(trial)
        for trial in list(running):  # one epoch each
            seen[trial].append(curves[trial][len(seen[trial])])
        for trial in list(running):
            mine = seen[trial]
            if len(mine) == EPOCHS:
                running.remove(trial)
                succeeded.append(mine)
                continue
            others = [c for t, c in seen.items() if t != trial]
            if rule == "katib-medianstop":
                stop = katib_medianstop_stop(mine, targets[trial], True, START_STEP)
            else:
                stop = should_stop(mine, others, shared)
            if stop:
                running.remove(trial)
    spent = sum(len(c) for c in seen.values())
    return spent, max(max(c) for c in seen.values())


def main_command_seconds() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        cmd = [sys.executable, "-m", "generator", "run", "--local", "values/microk8s.yaml", "--out", tmp]
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        return time.perf_counter() - started


def main() -> int:
    curves = record_curves()[:TRIALS]
    rules = ("none", "katib-medianstop", "median", "successive-halving")
    results: dict[str, list[tuple[int, float]]] = {r: [] for r in rules}
    for seed in range(STUDIES):
        order = list(range(TRIALS))
        random.Random(seed).shuffle(order)
        for rule in rules:
            results[rule].append(replay(curves, order, rule))
    base_spent = TRIALS * EPOCHS
    base_best = [best for _, best in results["none"]]
    print(
        f"\nearly stopping on {TRIALS} recorded trials x {EPOCHS} epochs, {STUDIES} seeded studies, {PARALLEL} "
        f"trials at a time (start_step={START_STEP}, min_trials={MIN_TRIALS}, eta={ETA})"
    )
    print(f"  {'rule':<20} {'trial-epochs':>12} {'saved':>7} {'mean regret':>12} {'max regret':>11}")
    saved: dict[str, float] = {}
    for rule in rules:
        spent = statistics.fmean(s for s, _ in results[rule])
        regrets = [100 * (b0 - b) for (_, b), b0 in zip(results[rule], base_best, strict=True)]
        saved[rule] = 1 - spent / base_spent
        print(
            f"  {rule:<20} {spent:>12.1f} {saved[rule]:>6.1%} {statistics.fmean(regrets):>9.3f} pp "
            f"{max(regrets):>8.3f} pp"
        )
    ratio = saved["median"] / saved["katib-medianstop"] if saved["katib-medianstop"] else float("inf")
    median_regret = statistics.fmean(100 * (b0 - b) for (_, b), b0 in zip(results["median"], base_best, strict=True))
    print(
        f"  aim: median saves >= 60% ({saved['median']:.1%}: {saved['median'] / 0.6:.2f}x aim), mean regret "
        f"<= 0.2 pp ({median_regret:.3f} pp), >= 2x Katib's savings ({ratio:.2f}x)"
    )
    seconds = main_command_seconds()
    print(f"\nREADME main command (katib-nas run --local values/microk8s.yaml) on this machine: {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
