"""Search-algorithm benchmark on digits: `katib-nas compare` of random, tpe and bayesianoptimization
(early stopping off, as each algorithm searches on its own) and the project's successive halving
(random suggestions, trials stopped at its rungs), 5 seeds each, over the chart's default search
space with a small budget (6 trials of 10 epochs, 2 at a time) so the whole run stays well under
30 minutes on 2 cores. Prints each arm's figures, the ratios between them and the machine's load.
The report is out/bench/compare/compare.html."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any

import yaml

from generator.validate import chart_defaults

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out" / "bench" / "compare"
SEEDS = 5
ARMS = ("random+none", "tpe+none", "bayesianoptimization+none", "random+successive-halving")
SEARCH = {
    "parallelTrialCount": 2,
    "maxTrialCount": 6,
    # skopt's default is 10 random points first, which would leave the Gaussian process nothing to do
    # in 6 trials; tpe starts guiding after parallelTrialCount (2) random ones.
    "algorithm": {
        "algorithmName": "bayesianoptimization",
        "algorithmSettings": [{"name": "n_initial_points", "value": "3"}],
    },
}
EPOCHS = 10


def values_file() -> Path:
    data = yaml.safe_load((ROOT / "values" / "microk8s.yaml").read_text())
    # The chart's default space, with dropout from 1e-6 instead of 0: Katib's skopt service refuses a double
    # whose min is not positive (older releases sample it log-uniformly), and every arm gets the same space.
    parameters = chart_defaults()["experiment"]["parameters"]
    for p in parameters:
        if p["name"] == "dropout":
            p["feasibleSpace"]["min"] = 1e-6
    data["experiment"] = {**data["experiment"], **SEARCH, "parameters": parameters}
    data["trial"] = {**data["trial"], "epochs": EPOCHS}
    path = OUT / "bench-values.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)  # measure afresh: compare would resume finished searches
    OUT.mkdir(parents=True)
    values = values_file()
    load_before = os.getloadavg()
    started = time.monotonic()
    cmd = [sys.executable, "-W", "ignore", "-m", "generator", "compare", str(values), "--out", str(OUT)]
    cmd += ["--algorithms", ",".join(ARMS), "--seeds", str(SEEDS)]
    subprocess.run(cmd, check=True, cwd=ROOT)
    seconds = time.monotonic() - started
    load_after = os.getloadavg()
    print_figures(json.loads((OUT / "summary.json").read_text()), seconds, load_before, load_after)
    return 0


def print_figures(
    s: dict[str, Any], seconds: float, load_before: tuple[float, float, float], load_after: tuple[float, float, float]
) -> None:
    arms = s["arms"]

    print(
        f"\nsearch-algorithm benchmark on digits: {SEEDS} seeds x {len(ARMS)} arms, "
        f"{SEARCH['maxTrialCount']} trials x {EPOCHS} epochs each"
    )
    print(
        f"{'arm':<28} {'best val acc':>24} {'test acc':>8} {'trial-epochs':>12} {'wall s':>7} {'epochs to target':>17}"
    )
    for arm in ARMS:
        a = arms[arm]
        best = f"{median(a['best']):.4f} ({min(a['best']):.4f}-{max(a['best']):.4f})"
        to_target = a["epochs_to_target"]
        reached = f"{'-' if to_target is None else f'{to_target:.0f}'} ({a['reached_target']}/{a['seeds']})"
        print(
            f"{arm:<28} {best:>24} {median(a['test_accuracy']):>8.4f} {median(a['trial_epochs']):>12.0f} "
            f"{median(a['seconds']):>7.0f} {reached:>17}"
        )
    print(f"target (median of the {SEEDS * len(ARMS)} final bests): {s['target']:.4f}")
    random, halving = arms["random+none"], arms["random+successive-halving"]
    print(
        "successive-halving / random, median trial-epochs: "
        f"{median(halving['trial_epochs']) / median(random['trial_epochs']):.2f}x"
    )
    for arm in ("tpe+none", "bayesianoptimization+none", "random+successive-halving"):
        a, b = arms[arm]["epochs_to_target"], random["epochs_to_target"]
        ratio = "n/a (not reached by half the seeds)" if a is None or b is None else f"{a / b:.2f}x"
        print(f"{arm} / random, median trial-epochs to the target: {ratio}")
    if s["decided_by"] == "tie":
        print(f"no winner: {s['winner']} and {s['runner_up']} tie on the median and on trial-epochs to the target")
    else:
        within = "exceeds" if s["margin_exceeds_spread"] else "is within"
        print(
            f"winner: {s['winner']} by {s['margin']:.4f} over {s['runner_up']} (decided by {s['decided_by']}); the "
            f"margin {within} the seed spread (standard deviation {s['spread']:.4f})"
        )
    print(
        f"whole benchmark {seconds / 60:.1f} min; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after, {load_after[2]:.1f} over the last 15 min (2 cores); report {OUT / 'compare.html'}"
    )


if __name__ == "__main__":
    sys.exit(main())
