"""Run an Experiment on this machine: trials are local processes of the same trainer with the same
flags, suggested by the Optuna sampler that implements the Katib algorithm of the same name, with
the same trial records and the same best-model pointer as on a cluster.

The study lives in a journal file next to the records, so an interrupted run (Ctrl-C) resumes:
trials that were running start again under the same name and the trainer picks up its checkpoint.

The best pointer obeys the values' promotion.budget as the cluster's promote steps do. With
`multi_objective` (local only: Katib has no multi-objective algorithm) the study searches the objective
and the serving p99 latency the trainer measured together, with one of Optuna's multi-objective samplers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from katib_nas_contract.best import choose, publish_choice, read_pointer
from katib_nas_contract.files import read_json_or
from katib_nas_contract.record import METRICS, SERVING_COST
from katib_nas_contract.serving_cost import LATENCY_P99, Budget

from ..errors import LocalRunError
from ..outputs import make_dirs
from .collector import parse_line, reduce
from .plan import Plan, trial_argv
from .progress import Progress
from .samplers import multi_objective_sampler, sampler_for
from .space import as_flag, search_space

EXIT_INTERRUPTED = 130


@dataclass
class Running:
    number: int
    name: str
    proc: subprocess.Popen[str]
    slot: int
    log: IO[str]
    reports: list[dict[str, float]] = field(default_factory=list)
    reader: threading.Thread = field(init=False)


@dataclass
class Summary:
    experiment_dir: Path
    completed: int = 0
    stopped_early: int = 0
    failed: int = 0
    interrupted: bool = False
    best: dict[str, Any] | None = None
    epochs_run: int = 0
    epochs_planned: int = 0
    seconds: float = 0.0


def core_slots(parallel: int) -> list[set[int]]:
    """Disjoint CPU sets, one per concurrent trial: the trainer sizes its thread pool to its affinity."""
    cores = sorted(os.sched_getaffinity(0))
    return [set(cores[i::parallel]) for i in range(parallel)]


class LocalRunner:
    def __init__(
        self,
        plan: Plan,
        model_root: Path,
        parallel: int | None = None,
        progress: Progress | None = None,
        multi_objective: str | None = None,
    ):
        e = plan.values.experiment
        budget = plan.values.promotion.budget
        self.budget = Budget(budget.latencyP99Ms, budget.modelBytes)
        self.multi_objective = multi_objective
        self.plan, self.model_root = plan, model_root
        self.experiment_dir = model_root / plan.name
        self.logs = self.experiment_dir / ".logs"
        cores = len(os.sched_getaffinity(0))
        self.parallel = max(1, min(parallel or e.parallelTrialCount, e.parallelTrialCount, cores))
        self.slots = core_slots(self.parallel)
        self.metric = e.objective.objectiveMetricName
        self.maximize = e.objective.type == "maximize"
        strategies = {s.name: s.value for s in e.objective.metricStrategies}
        self.strategy = strategies.get(self.metric, "max" if self.maximize else "min")
        self.progress = progress or Progress()
        self.stop = threading.Event()
        pointer = read_pointer(self.experiment_dir)  # a resumed run's best so far, for the status line
        ok = isinstance(pointer, dict) and isinstance(pointer.get("value"), int | float)
        self.best = _best_text(pointer.get("metric"), pointer["value"], pointer.get("trial")) if ok else "-"
        self.space = search_space(e.parameters)
        # The sampler first: a values file it refuses leaves nothing behind.
        sampler = (
            multi_objective_sampler(multi_objective, e, plan.source, seed=0)
            if multi_objective
            else sampler_for(e, plan.source, seed=0, services=plan.services)
        )
        make_dirs(self.logs, "--out")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = JournalStorage(JournalFileBackend(str(self.experiment_dir / "study.journal")))
        directions = [e.objective.type] + (["minimize"] if multi_objective else [])
        existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}.get(plan.name)
        if existing is not None and len(existing.directions) != len(directions):
            raise LocalRunError(
                f"{self.experiment_dir}: this search ran with "
                f"{'--multi-objective' if len(existing.directions) > 1 else 'one objective'}; resume it the same "
                "way, or give a new run its own --out"
            )
        self.study = optuna.create_study(
            study_name=plan.name, storage=storage, sampler=sampler, directions=directions, load_if_exists=True
        )

    # --- trials --------------------------------------------------------------------------------

    def trial_name(self, number: int) -> str:
        return f"{self.plan.name}-{number:04d}"

    def launch(self, number: int, params: dict[str, Any], slot: int) -> Running:
        name = self.trial_name(number)
        flags = {k: as_flag(v) for k, v in params.items()}
        argv = trial_argv(self.plan, flags, name, self.model_root)
        log = open(self.logs / f"{name}.log", "a", encoding="utf-8")  # noqa: SIM115  # closed in reap
        cores = self.slots[slot]
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=os.environ | self.plan.env,
            start_new_session=True,  # Ctrl-C reaches the runner only; it stops the trials itself
            preexec_fn=lambda: os.sched_setaffinity(0, cores),  # noqa: PLW1509
        )
        running = Running(number, name, proc, slot, log)
        running.reader = threading.Thread(target=self._read, args=(running,), daemon=True)
        running.reader.start()
        return running

    @staticmethod
    def _read(running: Running) -> None:
        assert running.proc.stdout is not None
        for line in running.proc.stdout:
            running.log.write(line)
            metrics = parse_line(line)
            if metrics:
                running.reports.append(metrics)

    def record_metrics(self, name: str) -> dict[str, Any]:
        metrics: dict[str, Any] = read_json_or(self.experiment_dir / name / METRICS, {})
        return metrics

    def reap(self, running: Running, summary: Summary) -> None:
        code = running.proc.wait()
        running.reader.join()
        running.log.close()
        if self.stop.is_set() and code in (143, -signal.SIGTERM):
            return  # interrupted: stays RUNNING in the study and resumes on the next run
        values = [r[self.metric] for r in running.reports if self.metric in r]
        value = reduce(values, self.strategy)
        latency = self.latency(running.name) if self.multi_objective else None
        if code != 0 or value is None or (self.multi_objective and latency is None):
            why = (
                f"exit code {code}"
                if code != 0
                else f"no {self.metric}= line on stdout"
                if value is None
                else f"no {LATENCY_P99} in its {SERVING_COST}, the second objective"
            )
            self.study.tell(running.number, state=TrialState.FAIL)
            summary.failed += 1
            self.progress.event(f"{running.name} failed ({why}); log: {self.logs / (running.name + '.log')}")
            return
        self.study.tell(running.number, [value, latency] if latency is not None else value)
        metrics = self.record_metrics(running.name)
        stopped = _stopped_early(metrics)
        summary.completed += 1
        summary.stopped_early += stopped
        how = f"stopped by {metrics['stopped_by']} after epoch {metrics['epochs_run']}" if stopped else "completed"
        cost = f", p99 {latency:g} ms" if latency is not None else ""
        self.progress.event(f"{running.name} {how}: {self.metric}={value:.4f}{cost}")
        choice = choose(self.experiment_dir, self.metric, "maximize" if self.maximize else "minimize", self.budget)
        for line in publish_choice(self.experiment_dir, choice):
            self.progress.event(line)
        if choice.best is not None:
            self.best = _best_text(choice.best.metric, choice.best.value, choice.best.trial)
        elif choice.none_fits:
            self.best = f"none within the budget ({len(choice.ruled_out)} ruled out)"

    def latency(self, name: str) -> float | None:
        cost = read_json_or(self.experiment_dir / name / SERVING_COST, {})
        value = cost.get(LATENCY_P99) if isinstance(cost, dict) else None
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    # --- the loop ------------------------------------------------------------------------------

    def run(self) -> Summary:
        e = self.plan.values.experiment
        started = time.monotonic()
        summary = Summary(self.experiment_dir)
        completed = [t for t in self.study.trials if t.state == TrialState.COMPLETE]
        summary.completed = len(completed)
        # A resumed search counts the stops of its earlier runs too, as it counts their trials.
        summary.stopped_early = sum(_stopped_early(self.record_metrics(self.trial_name(t.number))) for t in completed)
        summary.failed = sum(t.state == TrialState.FAIL for t in self.study.trials)
        resume = [t for t in self.study.trials if t.state == TrialState.RUNNING]
        if self.study.trials:
            self.progress.event(
                f"resuming {self.plan.name}: {summary.completed} done, {summary.failed} failed, "
                f"{len(resume)} interrupted trial(s) start again"
            )
        running: dict[int, Running] = {}
        handlers = {sig: signal.signal(sig, self._interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not self.stop.is_set():
                done = [slot for slot, r in running.items() if r.proc.poll() is not None]
                for slot in done:
                    self.reap(running.pop(slot), summary)
                if summary.failed > e.maxFailedTrialCount:
                    raise LocalRunError(
                        f"{summary.failed} trials failed, more than experiment.maxFailedTrialCount="
                        f"{e.maxFailedTrialCount}; see the logs in {self.logs}"
                    )
                if (done or not running) and self._goal_reached():  # the study changes only when a trial ends
                    self.progress.event(f"objective goal {e.objective.goal} reached")
                    break
                free = [s for s in range(self.parallel) if s not in running]
                while free and (resume or len(self.study.trials) < e.maxTrialCount):
                    slot = free.pop(0)
                    if resume:
                        frozen = resume.pop(0)
                        number, params = frozen.number, frozen.params
                    else:
                        trial = self.study.ask(self.space)
                        number, params = trial.number, trial.params
                    running[slot] = self.launch(number, params, slot)
                    self.progress.event(f"{self.trial_name(number)} started: {_short(params)}")
                if not running:
                    break
                self._status(running, summary)
                time.sleep(0.1)
        finally:
            if self.stop.is_set():
                summary.interrupted = True
                for r in running.values():
                    r.proc.send_signal(signal.SIGTERM)
                for r in running.values():
                    self.reap(r, summary)
                self.progress.event(
                    f"interrupted: {len(running)} running trial(s) saved their checkpoints; run the same command "
                    "again to resume"
                )
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            self.progress.close()
        self._totals(summary)
        summary.seconds = time.monotonic() - started
        return summary

    def _interrupt(self, _signum: int, _frame: FrameType | None) -> None:
        self.stop.set()

    def _goal_reached(self) -> bool:
        goal = self.plan.values.experiment.objective.goal
        done = [float(t.values[0]) for t in self.study.trials if t.state == TrialState.COMPLETE and t.values]
        if goal is None or not done:
            return False
        best = max(done) if self.maximize else min(done)
        return best >= goal if self.maximize else best <= goal

    def _status(self, running: dict[int, Running], summary: Summary) -> None:
        e = self.plan.values.experiment
        self.progress.status(
            len(running), summary.completed, summary.stopped_early, summary.failed, e.maxTrialCount, self.best
        )

    def _totals(self, summary: Summary) -> None:
        epochs = self.plan.values.trial.epochs
        for t in self.study.trials:
            if t.state != TrialState.COMPLETE:
                continue
            metrics = self.record_metrics(self.trial_name(t.number))
            summary.epochs_run += int(metrics.get("epochs_run", 0))
            summary.epochs_planned += epochs
        summary.best = read_pointer(self.experiment_dir)


def _stopped_early(metrics: dict[str, Any]) -> bool:
    """Whether a trial's record says an early-stopping rule ended it (patience is the trainer's own)."""
    return metrics.get("stopped_by") not in (None, "patience")


def _best_text(metric: Any, value: float, trial: Any) -> str:
    return f"{metric}={value:.4f} ({trial})"


def _short(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
