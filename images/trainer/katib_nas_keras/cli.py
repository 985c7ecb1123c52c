"""Command line of the Keras trial program: the contract's flags (katib_nas_contract.args), parsed the
same way as the PyTorch trainer's; a bad flag or missing data is one clear line on stderr and exit 2."""

from __future__ import annotations

import os
import sys

from katib_nas_contract.args import build_parser, cpu_quota, data_dir, search_params, stopping_rule, trial_name
from katib_nas_contract.datasets import DataError, load
from katib_nas_contract.katib_status import report_early_stop
from katib_nas_contract.record import TrialRecord

PROG = "katib-nas-keras"


def configure(threads: int, device: str, seed: int) -> str:
    """Threads, device and determinism: all must be set before TensorFlow starts its runtime.
    Returns the device used, or raises ValueError for a device that is not there."""
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1 if threads == 1 else 2)
    gpus = tf.config.list_physical_devices("GPU")
    if device == "cuda" and not gpus:
        raise ValueError("--device cuda: TensorFlow sees no GPU; use --device cpu or auto")
    if device == "cpu" or not gpus:
        tf.config.set_visible_devices([], "GPU")
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    return "cuda" if gpus and device != "cpu" else "cpu"


def main(argv: list[str] | None = None) -> int:
    args = build_parser(PROG, __doc__).parse_args(argv)
    params = search_params(args)
    # TensorFlow's C++ start-up notices would drown the metric lines in the trial log.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        data = load(args.dataset, data_dir(args), args.output_dir)
    except DataError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    try:
        device = configure(args.threads or cpu_quota(), args.device, args.seed)
    except ValueError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    from .train import Run, dry_run, train

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
