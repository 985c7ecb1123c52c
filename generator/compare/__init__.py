"""`katib-nas compare`: several searches over the same space, with different algorithms and seeds, run
here or read from records copied off a cluster, in one HTML report with a winner and its margin."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import CompareError
from .page import summary_json, verdict_text, write_page, write_summary
from .runs import SearchRun, read_run
from .stats import default_target, summarize, verdict

__all__ = ["Comparison", "SearchRun", "compare", "read_record_runs"]


@dataclass(frozen=True)
class Comparison:
    page: Path
    summary: Path
    verdict_line: str


def read_record_runs(specs: list[str], metric: str, maximize: bool) -> list[SearchRun]:
    """`ARM=DIR` per search: DIR is one Experiment's directory of trial records; the same ARM given
    several times is that arm's seeds, numbered in the order given."""
    runs: list[SearchRun] = []
    for spec in specs:
        arm, sep, folder = spec.partition("=")
        if not sep or not arm or not folder:
            raise CompareError(
                f"--records {spec}: write ARM=DIR, e.g. tpe=copied/nas-tpe-1 (one Experiment's trial records)"
            )
        seed = str(sum(r.arm == arm for r in runs) + 1)
        runs.append(read_run(Path(folder), arm, seed, metric, maximize))
    return runs


def compare(
    runs: list[SearchRun], out: Path, title: str, metric: str, maximize: bool, target: float | None = None
) -> Comparison:
    goal = default_target(runs) if target is None else target
    summaries = summarize(runs, goal, maximize)
    v = verdict(summaries, maximize)
    out.mkdir(parents=True, exist_ok=True)
    page = write_page(out, title, runs, summaries, v, metric, maximize, goal)
    summary = write_summary(out, summary_json(summaries, v, metric, goal))
    return Comparison(page, summary, verdict_text(v, metric))
