"""The trial program's command line, the same for every framework: the contract's flags, the data set,
the framework's start-up, then a dry run or the trial, and Katib's EarlyStopped mark. A bad flag, a
missing device or missing data is one clear line on stderr and exit 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from . import gpu_memory
from .args import build_parser, data_dir, search_params, stopping_rule, threads, trial_name
from .datasets import Arrays, DataError, load
from .katib_status import report_early_stop
from .provenance import gather
from .record import TrialRecord
from .trial import Run, Trainer, dry_run, train


@dataclass(frozen=True)
class Framework:
    """What a trainer package plugs into the command line."""

    prog: str
    description: str | None
    # (threads, --device, seed, GPU memory budget in MiB or None) -> the device used ("cpu" or "cuda");
    # ValueError names a device that is not there or a budget it cannot hold. Runs after the data set
    # loaded, so a bad data flag fails before a framework starts.
    configure: Callable[[int, str, int, int | None], str]
    # (run, data, device) -> the trainer; called only when there is training to do.
    trainer: Callable[[Run, Arrays, str], Trainer]
    # The framework's out-of-memory exception types, asked after configure (a framework imports late).
    out_of_memory: Callable[[], tuple[type[BaseException], ...]]


def main(framework: Framework, argv: list[str] | None = None) -> int:
    prog = framework.prog
    args = build_parser(prog, framework.description).parse_args(argv)
    params = search_params(args)
    try:
        data = load(args.dataset, data_dir(args), args.output_dir)
        budget = gpu_memory.budget(args.gpu_memory_mib)
        device = framework.configure(threads(args), args.device, args.seed, budget)
    except (DataError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    run = Run(
        params=params,
        seed=args.seed,
        epochs=int(params["epochs"]),
        min_delta=args.min_delta,
        record=None,
        metrics_file=args.metrics_file,
        stopping=stopping_rule(args),
    )
    record = None if args.dry_run else TrialRecord(args.output_dir / args.experiment / trial_name(args, params))

    def start() -> Trainer:
        trainer = framework.trainer(run, data, device)
        if record is not None:
            record.provenance = gather(args, trainer.framework, device, data)  # written if the trial starts afresh
        return trainer

    try:
        if record is None:
            return dry_run(run, start())
        run.record = record
        code = train(run, data, start)
    except framework.out_of_memory() as exc:
        line = gpu_memory.out_of_memory_line(budget, exc)
        if record is not None and record.root.is_dir():  # the checkpoint stays: a rerun resumes from it
            record.status("failed", reason=line)
        print(f"{prog}: {line}", file=sys.stderr)  # noqa: T201
        return gpu_memory.EXIT_OUT_OF_MEMORY
    said = report_early_stop(run.record) if code == 0 else None  # our rules' stops are EarlyStopped in Katib
    if said:
        print(f"{prog}: {said}", file=sys.stderr)  # noqa: T201
    return code
