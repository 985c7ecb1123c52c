"""`python -m katib_nas_server promote`: keep best.json pointing at the best complete trial.

--watch   keep it current while the Experiment runs, then stay up (the extraction pod's job);
--first   return once a best model is published (the server's init container);
--final   return once the Experiment has finished and its best model is published (the batch Job).

--max-latency-p99-ms / --max-model-bytes (the chart's promotion.budget, passed to all three) promote
the best trial whose measured serving cost fits, and log the better trials the budget ruled out.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from katib_nas_contract.best import (
    NO_BUDGET,
    Choice,
    Goal,
    best_from_experiment,
    choose,
    experiment_finished,
    none_fits_reason,
    publish_choice,
    read_pointer,
)
from katib_nas_contract.serving_cost import Budget

SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


class Source(Protocol):
    def poll(self) -> tuple[Choice, bool]:
        """The best complete trial now (if any, within the budget), and whether the search has finished."""
        ...


class RecordsSource:
    """Trial records on disk: local runs, or a cluster without API access. It cannot know when the
    search ends, so --final returns as soon as a best model exists."""

    def __init__(self, experiment_dir: Path, metric: str, goal: str, budget: Budget = NO_BUDGET) -> None:
        self.experiment_dir, self.metric, self.budget = experiment_dir, metric, budget
        self.goal: Goal = "minimize" if goal == "minimize" else "maximize"

    def poll(self) -> tuple[Choice, bool]:
        choice = choose(self.experiment_dir, self.metric, self.goal, self.budget)
        return choice, choice.best is not None


class KatibSource:
    """The Experiment's status through the Kubernetes API (the chart's read-only Role). With a budget the
    trial records choose (Katib's optimal trial ignores serving cost), by the Experiment's objective."""

    def __init__(self, experiment_dir: Path, fetch: Callable[[], dict[str, Any]], budget: Budget = NO_BUDGET) -> None:
        self.experiment_dir, self.fetch, self.budget = experiment_dir, fetch, budget

    def poll(self) -> tuple[Choice, bool]:
        experiment = self.fetch()
        finished = experiment_finished(experiment)
        if not self.budget.is_set:
            return Choice(best_from_experiment(experiment, self.experiment_dir)), finished
        objective = (experiment.get("spec") or {}).get("objective") or {}
        goal: Goal = "minimize" if objective.get("type") == "minimize" else "maximize"
        metric = str(objective.get("objectiveMetricName", "accuracy"))
        return choose(self.experiment_dir, metric, goal, self.budget), finished


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
    annotate: Callable[[], list[str]] | None = None,
) -> int:
    """`annotate`: more work per poll (the extraction pod's trial_images.ImageRecorder); it returns log lines."""
    started = time.monotonic()
    waiting_said = False
    while True:
        for line in annotate() if annotate else []:
            log(line)
        choice, finished = source.poll()
        for line in publish_choice(experiment_dir, choice):
            log(line)
        pointer = read_pointer(experiment_dir)
        published = isinstance(pointer, dict) and isinstance(pointer.get("trial"), str)
        if mode == "first" and published:
            return 0
        if mode == "final" and finished:
            if published:
                return 0
            if choice.none_fits:
                log(f"the search finished and {none_fits_reason(choice)}; nothing to serve")
            else:
                log(f"the search finished without a complete trial under {experiment_dir}; nothing to serve")
            return 1
        if not waiting_said and mode != "watch":  # said before any giving up: the log tells what was awaited
            log(f"waiting for {'the search to finish' if mode == 'final' else 'a complete trial'} in {experiment_dir}")
            waiting_said = True
        if timeout and time.monotonic() - started > timeout:
            log(f"gave up after {timeout:g}s without {'a finished search' if mode == 'final' else 'a best model'}")
            return 1
        sleep(interval)


def budget_from(args: argparse.Namespace) -> Budget:
    return Budget(args.max_latency_p99_ms, args.max_model_bytes)


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number >= 1")
    return value


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
    parser.add_argument(
        "--max-latency-p99-ms", type=positive_float, help="promote only models whose measured batch-1 p99 fits"
    )
    parser.add_argument("--max-model-bytes", type=positive_int, help="promote only models whose file fits")


def source_for(args: argparse.Namespace, experiment_dir: Path) -> Source:
    kind = args.source
    if kind == "auto":
        kind = "katib" if SERVICE_ACCOUNT_TOKEN.is_file() else "records"
    if kind == "katib":
        return KatibSource(experiment_dir, kube_fetch(args.experiment, args.namespace), budget_from(args))
    return RecordsSource(experiment_dir, args.metric, args.goal, budget_from(args))
