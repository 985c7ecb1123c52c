"""Benchmarks of the generator path: `helm template` of each profile and `katib-nas validate` of each
file, as a user runs them (whole processes, pinned helm). Prints medians and the ratio to the goal."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HELM = ROOT / ".tools" / "bin" / "helm"
KATIB_NAS = ROOT / ".venv" / "bin" / "katib-nas"
PROFILES = sorted((ROOT / "values").glob("*.yaml"))
RUNS = int(os.environ.get("BENCH_RUNS", "15"))
GOALS = {"helm template": 0.3, "katib-nas validate": 1.0}


def timed(cmd: list[str]) -> list[float]:
    subprocess.run(cmd, check=True, capture_output=True)  # warm the page cache
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return samples


def main() -> int:
    if not HELM.is_file() or not KATIB_NAS.is_file():
        print("run `make setup` first", file=sys.stderr)
        return 2
    print(f"{'benchmark':<22} {'file':<16} {'median s':>9} {'p90 s':>7} {'goal s':>7} {'median/goal':>12}")
    worst = 0.0
    for path in PROFILES:
        commands = {
            "helm template": [
                str(HELM),
                "template",
                "nas",
                str(ROOT / "charts" / "katib-nas"),
                "-f",
                str(path),
                "--kube-version",
                "1.31.0",
                "--api-versions",
                "kubeflow.org/v1beta1/Experiment",
            ],
            "katib-nas validate": [str(KATIB_NAS), "validate", str(path)],
        }
        for name, cmd in commands.items():
            samples = sorted(timed(cmd))
            median = statistics.median(samples)
            p90 = samples[int(0.9 * (len(samples) - 1))]
            ratio = median / GOALS[name]
            worst = max(worst, ratio)
            print(f"{name:<22} {path.name:<16} {median:>9.3f} {p90:>7.3f} {GOALS[name]:>7.1f} {ratio:>12.2f}")
    print(f"runs per figure: {RUNS}; worst median/goal ratio: {worst:.2f} ({'within' if worst <= 1 else 'over'} goal)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
