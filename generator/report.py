"""`katib-nas report`: an HTML page and PNGs about a search, built from its trial records (a local
run's, or a cluster run's copied off the model PVC): the objective per trial over time, learning
curves with the stopped trials marked, parameter importance, a parallel-coordinates view, the
compute early stopping spent and saved, and the objective against the serving latency each trainer
measured, with the Pareto front and the serving budget."""

from __future__ import annotations

import html
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from optuna.distributions import BaseDistribution  # noqa: E402
from optuna.exceptions import ExperimentalWarning  # noqa: E402
from optuna.visualization import matplotlib as optuna_plots  # noqa: E402

from katib_nas_contract.best import no_fit_reason, read_pointer  # noqa: E402
from katib_nas_contract.files import read_json, read_json_or  # noqa: E402
from katib_nas_contract.record import COMPLETE, CURVE, METRICS, PARAMS, SERVING_COST, STATUS  # noqa: E402
from katib_nas_contract.serving_cost import LATENCY_P99, MODEL_BYTES, Budget  # noqa: E402

from .errors import LocalRunError  # noqa: E402
from .local.space import search_space  # noqa: E402
from .models import Experiment  # noqa: E402


@dataclass
class TrialRecord:
    name: str
    params: dict[str, Any]
    curve: list[float]
    planned: int
    value: float | None  # the objective from the final metrics (None: not complete)
    ended: str  # completed, early_stopped, running, failed, terminated
    stopped_by: str | None
    finished: float  # seconds after the first trial started
    cost: dict[str, Any] | None = None  # the record's SERVING_COST (None: not measured, or Katib's Trials)

    def cost_of(self, key: str) -> float | None:
        value = (self.cost or {}).get(key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def read_records(experiment_dir: Path, metric: str) -> list[TrialRecord]:
    records = []
    starts = [p.stat().st_mtime for p in experiment_dir.glob(f"*/{PARAMS}")]
    if not starts:
        raise LocalRunError(f"{experiment_dir}: no trial records (*/{PARAMS}); run the search first")
    t0 = min(starts)
    for params_path in sorted(experiment_dir.glob(f"*/{PARAMS}")):
        trial = params_path.parent
        params = read_json(params_path)
        curve = read_json_or(trial / CURVE, [])
        metrics = read_json_or(trial / METRICS, {})
        status = read_json_or(trial / STATUS, {})
        complete = (trial / COMPLETE).is_file()
        finished = (trial / COMPLETE).stat().st_mtime if complete else (trial / CURVE).stat().st_mtime
        records.append(
            TrialRecord(
                name=trial.name,
                params=params.get("params", {}),
                curve=[float(p[metric]) for p in curve if metric in p],
                planned=int(params.get("epochs", len(curve))),
                value=float(metrics[metric]) if complete and metric in metrics else None,
                ended=metrics.get("ended", status.get("state", "running"))
                if complete
                else status.get("state", "running"),
                stopped_by=metrics.get("stopped_by"),
                finished=finished - t0,
                cost=cost if complete and isinstance(cost := read_json_or(trial / SERVING_COST, None), dict) else None,
            )
        )
    return records


def pareto_front(points: list[tuple[float, float, str]], maximize: bool) -> list[str]:
    """Names of the points (objective, latency, name) no other point beats on both: at least as good an
    objective at no more latency, and strictly better on one. Sorted by latency."""
    front: list[tuple[float, str]] = []
    best: float | None = None
    # By latency, then the better objective first: a point is on the front when its objective beats every
    # faster (or equally fast) point's.
    for value, latency, name in sorted(points, key=lambda p: (p[1], -p[0] if maximize else p[0])):
        if best is None or (value > best if maximize else value < best):
            front.append((latency, name))
            best = value
    return [name for _, name in front]


def records_from_trials(trials: list[dict[str, Any]], metric: str, maximize: bool, epochs: int) -> list[TrialRecord]:
    """Katib Trial objects as records: parameters, the objective Katib observed, how each ended. Katib
    keeps no per-epoch curve in the Trial, so the learning-curve plot needs the PVC's records instead."""
    starts = [_time(t.get("status", {}).get("startTime")) for t in trials]
    t0 = min((s for s in starts if s is not None), default=0.0)
    records = []
    for trial in sorted(trials, key=lambda t: t["metadata"]["name"]):
        status = trial.get("status") or {}
        conditions = {c["type"] for c in status.get("conditions") or [] if c.get("status") == "True"}
        observed = {m["name"]: m for m in (status.get("observation") or {}).get("metrics") or []}
        value = observed.get(metric, {}).get("max" if maximize else "min")
        ended = next((e for c, e in _ENDINGS if c in conditions), "running")
        params = {p["name"]: p["value"] for p in trial.get("spec", {}).get("parameterAssignments") or []}
        records.append(
            TrialRecord(
                name=trial["metadata"]["name"],
                params=params,
                curve=[],
                planned=epochs,
                value=float(value) if value not in (None, "") and ended != "failed" else None,
                ended=ended,
                stopped_by="medianstop" if ended == "early_stopped" else None,
                finished=(_time(status.get("completionTime")) or t0) - t0,
            )
        )
    return records


_ENDINGS = (("EarlyStopped", "early_stopped"), ("Succeeded", "completed"), ("Failed", "failed"))


def _time(stamp: str | None) -> float | None:
    if not stamp:
        return None
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def cluster_trials(
    experiment: str, namespace: str, kubeconfig: str | None, context: str | None
) -> list[dict[str, Any]]:
    from kubernetes import client

    from .kube import api_client, cluster_error

    try:
        answer = client.CustomObjectsApi(api_client(kubeconfig, context)).list_namespaced_custom_object(
            "kubeflow.org", "v1beta1", namespace, "trials", label_selector=f"katib.kubeflow.org/experiment={experiment}"
        )
    except Exception as exc:  # unreachable, or refused
        raise cluster_error(exc) from None
    items: list[dict[str, Any]] = answer.get("items", []) if isinstance(answer, dict) else []
    if not items:
        raise LocalRunError(f"no Trials of Experiment {namespace}/{experiment} in the cluster")
    return items


def rebuild_study(records: list[TrialRecord], experiment: Experiment) -> optuna.Study:
    """An in-memory Optuna study of the complete trials, for Optuna's importance and parallel plots."""
    space: dict[str, BaseDistribution] = search_space(experiment.parameters)
    study = optuna.create_study(direction=experiment.objective.type)
    for r in records:
        if r.value is None:
            continue
        params = {name: _as_param(r.params.get(name), dist) for name, dist in space.items()}
        if any(
            v is None or not dist._contains(dist.to_internal_repr(v))
            for v, dist in zip(params.values(), space.values(), strict=True)
        ):
            continue  # a record from another search space
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=space,
                value=r.value,
                intermediate_values=dict(enumerate(r.curve, start=1)),
            )
        )
    return study


def _as_param(value: Any, dist: BaseDistribution) -> Any:
    """The record's parsed flag value in the distribution's terms (a categorical "0.00001" is 1e-05 on disk)."""
    if not isinstance(dist, optuna.distributions.CategoricalDistribution):
        return value
    for choice in dist.choices:
        if str(choice) == str(value):
            return choice
        try:
            if float(str(choice)) == float(value):
                return choice
        except (TypeError, ValueError):
            continue
    return None


def _stopped(r: TrialRecord) -> bool:
    return r.stopped_by not in (None, "patience")


def write_report(
    experiment_dir: Path,
    experiment: Experiment,
    out: Path,
    records: list[TrialRecord] | None = None,
    budget: Budget | None = None,
) -> Path:
    metric = experiment.objective.objectiveMetricName
    if records is None:
        records = read_records(experiment_dir, metric)
    out.mkdir(parents=True, exist_ok=True)
    images: list[tuple[str, str]] = []
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    done = sorted((r for r in records if r.value is not None), key=lambda r: r.finished)
    for stopped, marker, label in ((False, "o", "ran to the end"), (True, "x", "stopped early")):
        points = [r for r in done if _stopped(r) == stopped]
        ax.scatter([r.finished for r in points], [r.value or 0.0 for r in points], marker=marker, label=label)
    best, best_line = None, []
    for r in done:
        assert r.value is not None
        if best is None or (r.value > best if experiment.objective.type == "maximize" else r.value < best):
            best = r.value
        best_line.append(best)
    ax.step([r.finished for r in done], best_line, where="post", color="grey", label="best so far")
    ax.set(xlabel="seconds since the first trial started", ylabel=metric, title="Objective per trial over time")
    ax.legend()
    images.append(_save(fig, out / "objective.png", "Objective per trial over time"))

    curves = any(r.curve for r in records)  # Katib's Trials carry no curve; the PVC's records do
    if curves:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for r in records:
            epochs = range(1, len(r.curve) + 1)
            if _stopped(r):
                ax.plot(epochs, r.curve, linestyle="--", color="tab:red", alpha=0.7)
                ax.plot([len(r.curve)], [r.curve[-1]], marker="x", color="tab:red")
            else:
                ax.plot(epochs, r.curve, color="tab:blue", alpha=0.7)
        ax.plot([], [], color="tab:blue", label="ran to the end")
        ax.plot([], [], linestyle="--", marker="x", color="tab:red", label="stopped early (x: where)")
        ax.set(xlabel="epoch", ylabel=f"validation {metric}", title="Learning curves")
        ax.legend()
        images.append(_save(fig, out / "curves.png", "Learning curves"))

    study = rebuild_study(records, experiment)
    if len(study.trials) >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)  # Optuna's matplotlib plots
            ax = optuna_plots.plot_param_importances(study)
            images.append(_save(ax.figure, out / "importance.png", "Parameter importance (fANOVA)"))
            ax = optuna_plots.plot_parallel_coordinate(study)
            images.append(_save(ax.figure, out / "parallel.png", "Parallel coordinates"))

    maximize = experiment.objective.type == "maximize"
    costed = [r for r in done if r.cost_of(LATENCY_P99) is not None]
    front = pareto_front([(r.value or 0.0, r.cost_of(LATENCY_P99) or 0.0, r.name) for r in costed], maximize)
    if costed:
        images.append(_save(_pareto_figure(costed, front, metric, budget or Budget()), out / "pareto.png", PARETO))

    run = sum(len(r.curve) for r in records)
    planned = sum(r.planned for r in records)
    saved_rule = sum(r.planned - len(r.curve) for r in records if _stopped(r))
    saved_patience = sum(r.planned - len(r.curve) for r in records if r.stopped_by == "patience")
    if curves:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        names = [r.name.rsplit("-", 1)[-1] for r in records]
        ax.bar(names, [len(r.curve) for r in records], label="epochs run")
        ax.bar(
            names,
            [r.planned - len(r.curve) if r.value is not None else 0 for r in records],
            bottom=[len(r.curve) for r in records],
            color="lightgrey",
            label="epochs saved",
        )
        ax.set(xlabel="trial", ylabel="epochs", title=f"Compute: {run} of {planned} planned epochs run")
        ax.tick_params(axis="x", labelrotation=90)
        ax.legend()
        images.append(_save(fig, out / "compute.png", "Compute spent and saved"))

    summary = {
        "trials": len(records),
        "complete": len(done),
        "stopped_early": sum(_stopped(r) for r in records),
        "epochs_run": run if curves else None,
        "epochs_planned": planned if curves else None,
        "epochs_saved_by_rule": saved_rule if curves else None,
        "epochs_saved_by_patience": saved_patience if curves else None,
        "best": read_pointer(experiment_dir),
        "pareto_front": front if costed else None,
        "budget": {"latency_p99_ms": budget.latency_p99_ms, "model_bytes": budget.model_bytes}
        if budget is not None and budget.is_set
        else None,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    page = out / "index.html"
    page.write_text(_html(experiment_dir, metric, records, images, summary), encoding="utf-8")
    return page


PARETO = "Objective against serving latency (Pareto front)"


def _pareto_figure(costed: list[TrialRecord], front: list[str], metric: str, budget: Budget) -> Any:
    """Each complete trial at its measured p99 latency; the front joined in order of latency; trials over the
    budget (latency or size) crossed out; the latency budget as a vertical line."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    at = {r.name: (r.cost_of(LATENCY_P99) or 0.0, r.value or 0.0) for r in costed}
    over = {r.name for r in costed if budget.violations(r.cost)}
    groups = (
        ("within the budget" if budget.is_set else "trial", "o", "tab:blue", False),
        ("over it", "x", "grey", True),
    )
    for label, marker, color, outside in groups:
        names = [n for n in at if (n in over) == outside]
        if names:
            ax.scatter([at[n][0] for n in names], [at[n][1] for n in names], marker=marker, c=color, label=label)
    ax.plot([at[n][0] for n in front], [at[n][1] for n in front], drawstyle="steps-post", color="tab:orange")
    ax.scatter(
        [at[n][0] for n in front],
        [at[n][1] for n in front],
        marker="D",
        s=60,
        facecolors="none",
        edgecolors="tab:orange",
        label="Pareto front",
    )
    if budget.latency_p99_ms is not None:
        ax.axvline(budget.latency_p99_ms, color="tab:red", linestyle="--", label=f"budget {budget.latency_p99_ms:g} ms")
    for name, point in at.items():
        ax.annotate(name.rsplit("-", 1)[-1], point, fontsize=7)
    ax.set(xlabel="batch-1 p99 latency, ms (onnxruntime, one thread)", ylabel=metric, title=PARETO)
    ax.legend()
    return fig


def _save(fig: Any, path: Path, title: str) -> tuple[str, str]:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name, title


def _html(
    experiment_dir: Path, metric: str, records: list[TrialRecord], images: list[tuple[str, str]], s: dict[str, Any]
) -> str:
    best = s["best"] if isinstance(s["best"], dict) else {}
    searched = sorted({k for r in records for k in r.params} & set(_varying(records)))
    rows = "".join(
        "<tr><td>{}</td>{}<td>{}</td><td>{}</td><td>{}</td><td>{}/{}</td><td>{}</td></tr>".format(
            html.escape(r.name),
            "".join(f"<td>{html.escape(_fmt(r.params.get(k)))}</td>" for k in searched),
            "" if r.value is None else f"{r.value:.4f}",
            _fmt(r.cost_of(LATENCY_P99)) if r.cost_of(LATENCY_P99) is not None else "",
            _fmt(int(r.cost_of(MODEL_BYTES) or 0)) if r.cost_of(MODEL_BYTES) is not None else "",
            len(r.curve),
            r.planned,
            html.escape(r.ended + (f" ({r.stopped_by})" if r.stopped_by else "")),
        )
        for r in records
    )
    figures = "".join(
        f'<figure><img src="{n}" alt="{html.escape(t)}"><figcaption>{html.escape(t)}</figcaption></figure>'
        for n, t in images
    )
    if s["epochs_run"] is None:
        compute = (
            "Katib's Trials carry no per-epoch curves: for learning curves and compute, run the report on the "
            "records copied off the model PVC (--experiment-dir)."
        )
    else:
        compute = (
            f"Compute: {s['epochs_run']} of {s['epochs_planned']} planned epochs run; "
            f"{s['epochs_planned'] - s['epochs_run']} saved ({s['epochs_saved_by_rule']} by the early-stopping "
            f"rule, {s['epochs_saved_by_patience']} by patience)."
        )
    header = "".join(f"<th>{html.escape(k)}</th>" for k in searched)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>katib-nas report: {html.escape(experiment_dir.name)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;color:#1d2330}}table{{border-collapse:collapse}}
td,th{{border:1px solid #c8ccd4;padding:.2rem .5rem;text-align:right}}figure{{display:inline-block;margin:1rem}}
img{{max-width:720px}}</style></head><body>
<h1>Search report: {html.escape(experiment_dir.name)}</h1>
<p>{s["trials"]} trials, {s["complete"]} complete, {s["stopped_early"]} stopped early by the rule.
{_best_sentence(best, metric)}</p>
<p>{html.escape(compute)}</p>
{figures}
<h2>Trials</h2>
<table><tr><th>trial</th>{header}<th>{metric}</th><th>p99 ms</th><th>model bytes</th><th>epochs</th><th>ended</th></tr>
{rows}</table>
</body></html>
"""


def _best_sentence(best: dict[str, Any], metric: str) -> str:
    if (reason := no_fit_reason(best)) is not None:
        return f"Best: none promoted ({html.escape(reason)})."
    value = best.get("value")
    shown = f"{value:.4f}" if isinstance(value, int | float) else "-"
    return f"Best: <b>{html.escape(str(best.get('trial', '-')))}</b> ({metric} = {shown})."


def _varying(records: list[TrialRecord]) -> list[str]:
    keys = {k for r in records for k in r.params}
    return [k for k in keys if len({json.dumps(r.params.get(k)) for r in records}) > 1]


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
