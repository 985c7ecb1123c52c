"""The comparison as one self-contained HTML page (the plots embedded as PNG data, nothing fetched)
and summary.json with the same figures."""

from __future__ import annotations

import base64
import html
import io
import json
import math
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from .runs import SearchRun  # noqa: E402
from .stats import ArmSummary, Verdict, band  # noqa: E402

AXES = (
    ("epochs", "trial-epochs", "trial-epochs spent"),
    ("seconds", "wall time", "seconds since the first trial started"),
)


def _png(fig: Any) -> str:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _curves(
    runs: list[SearchRun], arms: list[str], metric: str, maximize: bool, target: float
) -> list[tuple[str, str]]:
    images = []
    for axis, name, label in AXES:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for i, arm in enumerate(arms):
            b = band([r for r in runs if r.arm == arm], maximize, axis)
            color = f"C{i}"
            ax.step(b.x, b.median, where="post", color=color, label=f"{arm} (median)")
            ax.fill_between(b.x, b.low, b.high, step="post", color=color, alpha=0.15, linewidth=0)
        ax.axhline(target, color="grey", linestyle=":", label=f"target {target:.4f}")
        ax.set(xlabel=label, ylabel=f"best {metric} so far", title=f"Best {metric} so far against {name}")
        ax.legend(fontsize="small")
        caption = (
            f"Best {metric} so far against {name} ({label}): median over seeds, band from the worst to the best seed"
        )
        images.append((_png(fig), caption))
    return images


def _tests(summaries: list[ArmSummary]) -> tuple[str, str] | None:
    if not any(s.tests for s in summaries):
        return None
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for i, s in enumerate(summaries):
        ax.scatter([i] * len(s.tests), s.tests, color=f"C{i}", alpha=0.7)
        if s.tests:
            ax.hlines(statistics.median(s.tests), i - 0.25, i + 0.25, color=f"C{i}")
    ax.set_xticks(range(len(summaries)), [s.arm for s in summaries])
    ax.set(ylabel="test accuracy", title="Test accuracy of each search's best model (dots: seeds)")
    return _png(fig), "Final test accuracy of each search's best model, one dot per seed"


def _to_target(s: ArmSummary) -> str:
    """Median trial-epochs and seconds to the target (infinite, and said so, when most seeds missed it)."""
    epochs, seconds = s.to_target("epochs"), s.to_target("seconds")
    when = "not reached" if math.isinf(epochs) else f"{epochs:.0f} / {seconds:.0f} s"
    return f"{when} ({sum(r is not None for r in s.reached)}/{s.seeds} reached)"


def _range(values: list[float] | list[int], digits: int = 4) -> str:
    if not values:
        return "-"
    median = statistics.median(values)
    return f"{median:.{digits}f} ({min(values):.{digits}f} to {max(values):.{digits}f})"


def verdict_text(v: Verdict, metric: str) -> str:
    if v.runner_up is None:
        return f"Only one arm: {v.winner}."
    if v.decided_by == "tie":
        return (
            f"No winner: {v.winner} and {v.runner_up} tie on median best {metric} and on median trial-epochs to the "
            "target."
        )
    if v.decided_by == "objective":
        head = f"Winner: {v.winner}, median best {metric} {v.margin:.4f} above {v.runner_up}"
    else:
        head = f"Winner: {v.winner}, tied with {v.runner_up} on median best {metric} and first to the target"
    if v.spread is None:
        return head + "; one seed each, so no spread to judge the margin by."
    judged = "exceeds" if v.clear else "does not exceed"
    return f"{head}; the margin {v.margin:.4f} {judged} the seed spread (standard deviation {v.spread:.4f})."


def write_page(
    out: Path,
    title: str,
    runs: list[SearchRun],
    summaries: list[ArmSummary],
    v: Verdict,
    metric: str,
    maximize: bool,
    target: float,
) -> Path:
    arms = [s.arm for s in summaries]
    images = _curves(runs, arms, metric, maximize, target)
    tests = _tests(summaries)
    if tests:
        images.append(tests)
    figures = "".join(
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for data, caption in images
    )
    rows = "".join(
        "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>".format(
            ' class="winner"' if s.arm == v.winner else "",
            html.escape(s.arm),
            s.seeds,
            _range(s.finals),
            "-" if s.spread is None else f"{s.spread:.4f}",
            _range(s.tests),
            _to_target(s),
            _range(s.epochs, 0),
            _range(s.seconds, 0),
        )
        for s in summaries
    )
    run_rows = "".join(
        f"<tr><td>{html.escape(r.arm)}</td><td>{html.escape(r.seed)}</td><td>{len(r.trials)}</td>"
        f"<td>{html.escape(r.best_trial)}</td><td>{r.best_value:.4f}</td>"
        f"<td>{'-' if r.test_accuracy is None else f'{r.test_accuracy:.4f}'}</td><td>{r.epochs}</td>"
        f"<td>{r.seconds:.0f}</td><td>{html.escape(str(r.source))}</td></tr>"
        for r in runs
    )
    page = out / "compare.html"
    page.write_text(
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>katib-nas compare: {html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;color:#1d2330}}table{{border-collapse:collapse;margin:1rem 0}}
td,th{{border:1px solid #c8ccd4;padding:.2rem .5rem;text-align:right}}tr.winner{{background:#e6f4ea;font-weight:600}}
figure{{display:inline-block;margin:1rem}}img{{max-width:800px}}</style></head><body>
<h1>Search comparison: {html.escape(title)}</h1>
<p class="verdict">{html.escape(verdict_text(v, metric))}</p>
<p>Objective: {html.escape(metric)} ({"maximize" if maximize else "minimize"}), the best trial's validation figure.
Target: {target:.4f}. Medians over seeds, with the worst and best seed in brackets. A trial's epochs count
when it ends.</p>
<table><tr><th>arm</th><th>seeds</th><th>best {html.escape(metric)}</th><th>spread (sd)</th>
<th>test accuracy</th><th>to target: trial-epochs / wall time</th><th>trial-epochs spent</th><th>wall time (s)</th></tr>
{rows}</table>
{figures}
<h2>Searches</h2>
<table><tr><th>arm</th><th>seed</th><th>trials</th><th>best trial</th><th>{html.escape(metric)}</th>
<th>test accuracy</th><th>trial-epochs</th><th>wall time (s)</th><th>records</th></tr>
{run_rows}</table>
</body></html>
""",
        encoding="utf-8",
    )
    return page


def summary_json(summaries: list[ArmSummary], v: Verdict, metric: str, target: float) -> dict[str, Any]:
    def finite(x: float) -> float | None:
        return None if math.isinf(x) else x

    return {
        "metric": metric,
        "target": target,
        "winner": v.winner,
        "runner_up": v.runner_up,
        "margin": v.margin,
        "spread": v.spread,
        "margin_exceeds_spread": v.clear,
        "decided_by": v.decided_by,
        "arms": {
            s.arm: {
                "seeds": s.seeds,
                "best": s.finals,
                "test_accuracy": s.tests,
                "trial_epochs": s.epochs,
                "seconds": s.seconds,
                "epochs_to_target": finite(s.to_target("epochs")),
                "seconds_to_target": finite(s.to_target("seconds")),
                "reached_target": sum(r is not None for r in s.reached),
            }
            for s in summaries
        },
    }


def write_summary(out: Path, summary: dict[str, Any]) -> Path:
    path = out / "summary.json"
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return path
