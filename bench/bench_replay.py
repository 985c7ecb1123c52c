"""What floating-point rounding alone does to a trial's metrics, the basis of `katib-nas replay`'s
tolerance (generator.replay.TOLERANCE). The same PyTorch trial (same flags, seed and data) on 1 and on
2 threads: the kernels split their sums differently, so the two runs differ only in rounding, as runs
on other library builds or CPUs do. Prints, per metric, the largest difference over the trials, the
tolerance replay allows, and for scale the spread over seeds (what a different seed does)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from generator.replay import RELATIVE, TOLERANCE
from katib_nas_contract.record import METRICS

SEEDS = (1, 2, 3)
TRIALS = {
    "MLP": "--arch=mlp --units=128 --num-layers=2 --epochs=20 --patience=1000",
    "CNN": "--arch=cnn --channels=16 --conv-blocks=1 --units=64 --epochs=10 --patience=1000",
}


def metrics(flags: str, seed: int, threads: int, root: Path) -> dict[str, float]:
    cmd = [sys.executable, "-W", "ignore", "-m", "katib_nas_trainer", "--dataset=digits", f"--seed={seed}"]
    cmd += [f"--threads={threads}", f"--output-dir={root}", "--trial-name=t", *flags.split()]
    subprocess.run(cmd, check=True, capture_output=True)
    doc = json.loads((root / "default" / "t" / METRICS).read_text())
    return {key: float(doc[key]) for key in TOLERANCE}


def gap(key: str, a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), 1e-12) if key in RELATIVE else abs(a - b)


def main() -> int:
    worst = dict.fromkeys(TOLERANCE, 0.0)
    spread = dict.fromkeys(TOLERANCE, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in TRIALS.items():
            one = [metrics(flags, s, 1, Path(tmp) / f"{name}-{s}-1") for s in SEEDS]
            two = [metrics(flags, s, 2, Path(tmp) / f"{name}-{s}-2") for s in SEEDS]
            for key in TOLERANCE:
                gaps = [gap(key, a[key], b[key]) for a, b in zip(one, two, strict=True)]
                worst[key] = max(worst[key], *gaps)
                values = [m[key] for m in one]
                spread[key] = max(spread[key], gap(key, max(values), min(values)))
                line = ", ".join(f"{g:.4f}" for g in gaps)
                print(f"{name} {key}: |1 thread - 2 threads| per seed {line}")
    print("\nmetric          rounding only (max)   tolerance      spread over seeds (max)")
    for key, limit in TOLERANCE.items():
        unit = "relative" if key in RELATIVE else "absolute"
        print(f"{key:<15} {worst[key]:<21.4f} {limit:<6g} {unit:<8} {spread[key]:.4f}")
        print(f"  tolerance / rounding-only max: {limit / worst[key]:.1f}x" if worst[key] else "  rounding-only: 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
