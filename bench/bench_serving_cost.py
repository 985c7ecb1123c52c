"""Serving cost of the reference digits MLP and CNN (bench_trainer's flags), as a trial records it: each
trainer exports the model after one epoch (latency does not depend on the weights) and measures it with
katib_nas_contract.serving_cost (batch-1 p50/p99 on one onnxruntime thread, parameters, bytes). The
measurement is repeated to show its spread on this machine; the median of the repeats is printed."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_trainer import REFERENCE

from katib_nas_contract.files import read_json
from katib_nas_contract.flags import TRAINERS
from katib_nas_contract.record import MODEL, SERVING_COST
from katib_nas_contract.serving_cost import LATENCY_P50, LATENCY_P99, MODEL_BYTES, PARAMETERS, measure


def export(framework: str, flags: str, root: Path) -> Path:
    """One epoch of the reference model through the trainer's command line; its record directory."""
    _, *module = TRAINERS[framework].command
    # The last --epochs wins (argparse): one epoch instead of the reference's hundred.
    cmd = [sys.executable, *module, *flags.split(), "--epochs=1", f"--output-dir={root}", "--experiment=e"]
    cmd += ["--trial-name=t"]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=1800)
    return root / "e" / "t"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="measurements per model (default: %(default)s)")
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'model':<22} {'p50 ms':>8} {'p99 ms':>8} {'p99 spread':>17} {'parameters':>11} {'bytes':>10}")
    p50s = {}
    for framework in ("pytorch", "keras"):
        for name, (_, flags) in REFERENCE.items():
            with tempfile.TemporaryDirectory() as tmp:
                record = export(framework, flags, Path(tmp))
                costs = [read_json(record / SERVING_COST)]  # the trainer's own measurement first
                costs += [measure(record / MODEL) for _ in range(args.repeats - 1)]
            p50 = statistics.median(c[LATENCY_P50] for c in costs)
            p99 = [c[LATENCY_P99] for c in costs]
            p50s[(framework, name)] = p50
            label = f"{framework} {name.split()[-1]}"
            print(
                f"{label:<22} {p50:>8.4f} {statistics.median(p99):>8.4f} {min(p99):>8.4f}-{max(p99):<8.4f} "
                f"{costs[0][PARAMETERS]:>11,} {costs[0][MODEL_BYTES]:>10,}"
            )
    # p50 is the compute; on a shared machine p99 is mostly the time the process waited for a core.
    for framework in ("pytorch", "keras"):
        ratio = p50s[(framework, "digits MLP")] / p50s[(framework, "digits CNN")]
        print(f"{framework}: MLP p50 / CNN p50 = {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
