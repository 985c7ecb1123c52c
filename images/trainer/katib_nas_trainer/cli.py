"""Command line of the PyTorch trial program. Hyper-parameters arrive as flags named after the Katib
parameters (the contract's table, katib_nas_contract.args); a bad flag or missing data is one clear
line on stderr and exit 2."""

from __future__ import annotations

import sys

import torch

from katib_nas_contract.args import build_parser, cpu_quota, data_dir, search_params, stopping_rule, trial_name
from katib_nas_contract.katib_status import report_early_stop
from katib_nas_contract.record import TrialRecord

from .data import DataError, load
from .train import Run, dry_run, pick_device, seed_everything, train

PROG = "katib-nas-trainer"


def main(argv: list[str] | None = None) -> int:
    args = build_parser(PROG, __doc__).parse_args(argv)
    params = search_params(args)
    torch.set_num_threads(args.threads or cpu_quota())
    try:
        device = pick_device(args.device)
    except ValueError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    seed_everything(args.seed, device)
    try:
        data = load(args.dataset, data_dir(args), args.output_dir)
    except DataError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    data = data.to(device)
    run = Run(
        params=params,
        seed=args.seed,
        epochs=int(params["epochs"]),
        min_delta=args.min_delta,
        device=device,
        record=None,
        metrics_file=args.metrics_file,
        stopping=stopping_rule(args),
    )
    if args.dry_run:
        return dry_run(run, data)
    run.record = TrialRecord(args.output_dir / args.experiment / trial_name(args, params))
    code = train(run, data)
    said = report_early_stop(run.record) if code == 0 else None  # our rules' stops are EarlyStopped in Katib
    if said:
        print(f"{PROG}: {said}", file=sys.stderr)
    return code
