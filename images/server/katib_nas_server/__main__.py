"""`python -m katib_nas_server SUBCOMMAND`: the steps the chart's pods run.

promote  keep best.json pointing at the best complete trial (extraction pod, init containers)
serve    the inference server (settings from MODEL_DIR, MODEL_NAME, ...)
batch    score a data set with the best model (the batch Job)
"""

from __future__ import annotations

import argparse
import logging
import sys

from . import batch, promote, trial_images


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app
    from .connections import limited_protocol
    from .settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        log(str(exc))
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    raise_open_files_limit(settings.max_connections + 64)  # clients, plus the model, logs and listener
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http=limited_protocol(settings.max_header_bytes, settings.read_timeout, settings.max_connections),
        access_log=args.access_log,
        timeout_keep_alive=5,  # an idle keep-alive connection closes after 5 s (uvicorn's default, stated)
        timeout_graceful_shutdown=10,
    )
    return 0


def raise_open_files_limit(wanted: int) -> None:
    """MAX_CONNECTIONS must fit the process's file-descriptor limit, or accept() fails first."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="katib_nas_server")
    sub = parser.add_subparsers(dest="command", required=True)
    promote.add_arguments(sub.add_parser("promote", help="publish the best complete trial as best.json"))
    serve_parser = sub.add_parser("serve", help="serve the best model (Open Inference Protocol v2)")
    serve_parser.add_argument("--host", default="0.0.0.0")
    serve_parser.add_argument("--port", type=int, default=8080)
    serve_parser.add_argument("--access-log", action="store_true", help="log every request (off: it costs throughput)")
    batch.add_arguments(sub.add_parser("batch", help="score a data set with the best model"))
    args = parser.parse_args(argv)

    if args.command == "serve":
        return serve(args)
    if args.command == "batch":
        try:
            batch.run(args, log)
        except batch.BatchError as exc:
            log(f"batch: {exc}")
            return 2
        return 0
    experiment_dir = args.model_root / args.experiment
    experiment_dir.mkdir(parents=True, exist_ok=True)
    source = promote.source_for(args, experiment_dir)
    images = None
    if args.mode == "watch" and isinstance(source, promote.KatibSource):  # the extraction pod, on a cluster
        images = trial_images.ImageRecorder(experiment_dir, trial_images.kube_read_pod(args.namespace))
    return promote.run(source, experiment_dir, args.mode, args.interval, args.timeout, log=log, annotate=images)


if __name__ == "__main__":
    sys.exit(main())
