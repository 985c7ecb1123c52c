"""The trainer command line, built from the flag table: every trainer parses the same flags the same
way, so a bad flag is the same one line on stderr and exit 2 whichever framework runs the trial."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from .flags import SEARCH_FLAGS, Spec
from .gpu_memory import ENV as GPU_MEMORY_ENV
from .record import DATASETS_DIR
from .stopping import RULES, Rule

_COUNT = Spec("int", 1, 1, 10000)
_ETA = Spec("int", 3, 2, 100)
_MIB = Spec("int", 0, 1, 2**24)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see --help)", file=sys.stderr)  # noqa: T201
        sys.exit(2)


def typed(name: str, spec: Spec) -> Any:
    def convert(text: str) -> Any:
        if spec.kind == "choice":
            if text not in spec.choices:
                raise argparse.ArgumentTypeError(f"--{name}={text} is not one of {', '.join(spec.choices)}")
            return text
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--{name}={text} is not a number") from None
        if spec.kind == "int":
            if not value.is_integer():
                raise argparse.ArgumentTypeError(f"--{name}={text} is not an integer")
            value = int(value)
        assert spec.low is not None and spec.high is not None
        low_ok = value > spec.low if spec.low_open else value >= spec.low
        if not low_ok or value > spec.high:
            bracket = "(" if spec.low_open else "["
            raise argparse.ArgumentTypeError(f"--{name}={text} is out of range {bracket}{spec.low:g}, {spec.high:g}]")
        return value

    convert.__name__ = name
    return convert


def build_parser(prog: str, description: str | None = None) -> Parser:
    parser = Parser(prog=prog, description=description)
    search = parser.add_argument_group("search-space flags (Katib parameters)")
    for name, spec in SEARCH_FLAGS.items():
        search.add_argument(
            f"--{name}",
            type=typed(name, spec),
            default=spec.default,
            help=f"{spec.help} (default: {spec.default})".strip(),
        )
    parser.add_argument(
        "--dataset",
        default="digits",
        help="digits (bundled), mnist, fashion-mnist, or an .npz path (relative to --output-dir)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path(os.environ.get("MODEL_ROOT", "models")),
        help="model root; the record goes to <output-dir>/<experiment>/<trial>/",
    )
    parser.add_argument("--data-dir", type=Path, help=f"download cache (default: <output-dir>/{DATASETS_DIR})")
    parser.add_argument("--experiment", default="default", help="Experiment name (record directory)")
    parser.add_argument("--trial-name", help="trial name (default: derived from the parameters and seed)")
    parser.add_argument("--seed", type=int, default=42, help="seed for initialisation and shuffling")
    parser.add_argument("--min-delta", type=float, default=1e-4, help="smallest accuracy gain that resets patience")
    parser.add_argument("--metrics-file", type=Path, help="also append the metric lines here (Katib File collector)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: the CPUs this pod may use)")
    parser.add_argument(
        "--gpu-memory-mib",
        type=typed("gpu-memory-mib", _MIB),
        help=f"most GPU memory this trial's framework may take, in MiB (default: ${GPU_MEMORY_ENV}, else no cap)",
    )
    parser.add_argument("--dry-run", action="store_true", help="one tiny batch end to end; writes no record")
    stopping = parser.add_argument_group("early stopping across trials (reads the other trials' curves)")
    stopping.add_argument("--early-stopping", choices=RULES, default="none", help="rule (default: none)")
    stopping.add_argument("--es-metric", default="accuracy", help="objective metric the rule compares")
    stopping.add_argument("--es-goal", choices=("maximize", "minimize"), default="maximize")
    stopping.add_argument("--es-start-step", type=typed("es-start-step", _COUNT), default=4, help="first epoch checked")
    stopping.add_argument(
        "--es-min-trials", type=typed("es-min-trials", _COUNT), default=3, help="peers needed before stopping"
    )
    stopping.add_argument(
        "--es-reduction-factor", type=typed("es-reduction-factor", _ETA), default=3, help="successive halving's eta"
    )
    stopping.add_argument(
        "--es-replay-epoch",
        type=typed("es-replay-epoch", _COUNT),
        help="katib-nas replay: stop after this epoch, where the rule stopped the recorded trial (no peers read)",
    )
    return parser


def search_params(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name.replace("-", "_")) for name in SEARCH_FLAGS}


def stopping_rule(args: argparse.Namespace) -> Rule:
    return Rule(
        args.early_stopping,
        args.es_metric,
        args.es_goal == "maximize",
        args.es_start_step,
        args.es_min_trials,
        args.es_reduction_factor,
        args.es_replay_epoch,
    )


def threads(args: argparse.Namespace) -> int:
    """CPU threads the trainer uses: --threads, else the CPUs this pod may use."""
    return int(args.threads or cpu_quota())


def data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data_dir or args.output_dir / DATASETS_DIR)


def trial_name(args: argparse.Namespace, params: dict[str, Any]) -> str:
    """--trial-name, else Katib's trial name from the pod's environment, else one derived from the run."""
    if args.trial_name or os.environ.get("KATIB_TRIAL_NAME"):
        return str(args.trial_name or os.environ["KATIB_TRIAL_NAME"])
    digest = hashlib.sha256(json.dumps([params, args.seed], sort_keys=True).encode()).hexdigest()[:10]
    return f"trial-{digest}"


def cpu_quota() -> int:
    """CPUs this process may use: the affinity mask, capped by a cgroup v2 quota (a pod's CPU limit)."""
    count = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            count = min(count, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return count


def option_names() -> frozenset[str]:
    """Every flag a katib-nas trainer takes, without the dashes (the generator checks imported args)."""
    actions = build_parser("katib-nas-trainer")._actions  # argparse keeps its options only here
    return frozenset(o[2:] for action in actions for o in action.option_strings if o.startswith("--"))
