"""`python -m katib_nas_server SUBCOMMAND`: the steps the chart's pods run."""

from __future__ import annotations

import argparse
import sys

from . import promote


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="katib_nas_server")
    sub = parser.add_subparsers(dest="command", required=True)
    promote.add_arguments(sub.add_parser("promote", help="publish the best complete trial as best.json"))
    args = parser.parse_args(argv)
    experiment_dir = args.model_root / args.experiment
    experiment_dir.mkdir(parents=True, exist_ok=True)
    return promote.run(
        promote.source_for(args, experiment_dir),
        experiment_dir,
        args.mode,
        args.interval,
        args.timeout,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )


if __name__ == "__main__":
    sys.exit(main())
