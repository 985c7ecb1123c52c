"""`python -m katib_nas_server promote`: keep best.json pointing at the best complete trial.

--watch   keep it current while the Experiment runs, then stay up (the extraction pod's job);
--first   return once a best model is published (the server's init container);
--final   return once the Experiment has finished and its best model is published (the batch Job).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from katib_nas_contract.best import Best, best_from_experiment, best_from_records, experiment_finished, publish
from katib_nas_contract.record import POINTER

SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


class Source(Protocol):
    def poll(self) -> tuple[Best | None, bool]:
        """The best complete trial now (if any), and whether the search has finished."""
        ...


class RecordsSource:
    """Trial records on disk: local runs, or a cluster without API access. It cannot know when the
    search ends, so --final returns as soon as a best model exists."""

    def __init__(self, experiment_dir: Path, metric: str, goal: str) -> None:
        self.experiment_dir, self.metric, self.goal = experiment_dir, metric, goal

    def poll(self) -> tuple[Best | None, bool]:
        best = best_from_records(
            self.experiment_dir, self.metric, "minimize" if self.goal == "minimize" else "maximize"
        )
        return best, best is not None


class KatibSource:
    """The Experiment's status through the Kubernetes API (the chart's read-only Role)."""

    def __init__(self, experiment_dir: Path, fetch: Callable[[], dict[str, Any]]) -> None:
        self.experiment_dir, self.fetch = experiment_dir, fetch

    def poll(self) -> tuple[Best | None, bool]:
        experiment = self.fetch()
        return best_from_experiment(experiment, self.experiment_dir), experiment_finished(experiment)


def kube_fetch(name: str, namespace: str) -> Callable[[], dict[str, Any]]:
    from kubernetes import client, config

    config.load_incluster_config()  # type: ignore[no-untyped-call]
    api = client.CustomObjectsApi()

    def fetch() -> dict[str, Any]:
        experiment = api.get_namespaced_custom_object("kubeflow.org", "v1beta1", namespace, "experiments", name)
        if not isinstance(experiment, dict):
            raise TypeError(f"unexpected answer for Experiment {namespace}/{name}: {type(experiment).__name__}")
        return experiment

    return fetch


def run(
    source: Source,
    experiment_dir: Path,
    mode: str,
    interval: float,
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = print,
) -> int:
    started = time.monotonic()
    waiting_said = False
    while True:
        best, finished = source.poll()
        if best is not None and publish(experiment_dir, best):
            log(f"best model: {best.trial} ({best.metric}={best.value:g}, from {best.source})")
        published = best is not None or (experiment_dir / POINTER).is_file()
        if mode == "first" and published:
            return 0
        if mode == "final" and finished:
            if published:
                return 0
            log(f"the search finished without a complete trial under {experiment_dir}; nothing to serve")
            return 1
        if timeout and time.monotonic() - started > timeout:
            log(f"gave up after {timeout:g}s without {'a finished search' if mode == 'final' else 'a best model'}")
            return 1
        if not waiting_said and mode != "watch":
            log(f"waiting for {'the search to finish' if mode == 'final' else 'a complete trial'} in {experiment_dir}")
            waiting_said = True
        sleep(interval)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--watch", dest="mode", action="store_const", const="watch")
    mode.add_argument("--first", dest="mode", action="store_const", const="first")
    mode.add_argument("--final", dest="mode", action="store_const", const="final")
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--model-root", type=Path, default=Path("/models"))
    parser.add_argument(
        "--source",
        choices=("auto", "katib", "records"),
        default="auto",
        help="auto: Katib's status when running in a pod with a ServiceAccount token, else records",
    )
    parser.add_argument("--metric", default="accuracy", help="records source: objective metric")
    parser.add_argument("--goal", choices=("maximize", "minimize"), default="maximize", help="records source")
    parser.add_argument("--interval", type=float, default=15.0, help="seconds between polls")
    parser.add_argument("--timeout", type=float, default=0.0, help="give up after this many seconds (0: never)")


def source_for(args: argparse.Namespace, experiment_dir: Path) -> Source:
    kind = args.source
    if kind == "auto":
        kind = "katib" if SERVICE_ACCOUNT_TOKEN.is_file() else "records"
    if kind == "katib":
        return KatibSource(experiment_dir, kube_fetch(args.experiment, args.namespace))
    return RecordsSource(experiment_dir, args.metric, args.goal)
