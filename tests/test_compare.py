"""`katib-nas compare`: a real comparison on digits (two algorithms, two seeds, real trainer
processes), the winner logic on hand-made records, records laid out as copied off a cluster's model
volume, and bad input (one line, exit 2, nothing written)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from generator.cli import main
from generator.compare.arms import Arm, arm_values, parse_arms
from generator.compare.page import verdict_text
from generator.compare.runs import SearchRun, Trial, read_run
from generator.compare.stats import band, summarize, time_to_target, verdict

from .conftest import ROOT, tool_env

MICROK8S = ROOT / "values" / "microk8s.yaml"
BASE = yaml.safe_load(MICROK8S.read_text())


def katib_nas(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "generator", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=tool_env(), cwd=ROOT, timeout=900)


# --- a real comparison ---------------------------------------------------------------------------

TINY: dict[str, Any] = {
    "parallelTrialCount": 2,
    "maxTrialCount": 2,
    "maxFailedTrialCount": 1,
    "parameters": [{"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.001", "max": "0.05"}}],
}


@pytest.fixture(scope="module")
def tiny_compare(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    tmp = tmp_path_factory.mktemp("compare")
    values = tmp / "values.yaml"
    data = {
        **BASE,
        "experiment": {**BASE["experiment"], **TINY},
        "trial": {**BASE["trial"], "epochs": 2, "extraArgs": ["--units=32", "--num-layers=1"]},
    }
    values.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp / "out"
    proc = katib_nas("compare", str(values), "--algorithms", "random,tpe+none", "--seeds", "2", "--out", str(out))
    return proc, values, out


def test_compare_runs_each_arm_and_seed_into_one_self_contained_report(
    tiny_compare: tuple[subprocess.CompletedProcess[str], Path, Path],
) -> None:
    proc, _, out = tiny_compare
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"\[4/4\] tpe\+none seed 2: .* started", proc.stderr)  # progress names each search
    page = (out / "compare.html").read_text()
    # Best-so-far against trial-epochs and against wall time, and the test accuracies, drawn into the page.
    assert page.count('src="data:image/png;base64,') == 3
    assert "against trial-epochs" in page and "against wall time" in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing fetched: no CDN, no external image
    winner = re.search(r'<tr class="winner"><td>([^<]+)</td>', page)
    summary = json.loads((out / "summary.json").read_text())
    assert winner and winner.group(1) == summary["winner"] and summary["winner"] in ("random", "tpe+none")
    assert set(summary["arms"]) == {"random", "tpe+none"}
    for arm in summary["arms"].values():
        assert arm["seeds"] == 2 and len(arm["test_accuracy"]) == 2
        assert all(0.0 < a <= 1.0 for a in arm["best"]) and all(e >= 2 for e in arm["trial_epochs"])
    # With two trials tpe is still drawing its random start, so a tie is a fair outcome here.
    assert proc.stdout.startswith("No winner: " if summary["decided_by"] == "tie" else "Winner: ")


def test_each_search_replicates_the_whole_search_with_its_seed(
    tiny_compare: tuple[subprocess.CompletedProcess[str], Path, Path],
) -> None:
    _, _, out = tiny_compare
    for seed in (1, 2):
        ran = yaml.safe_load((out / "runs" / "tpe+none" / f"seed-{seed}" / "values.yaml").read_text())
        assert ran["experiment"]["algorithm"] == {
            "algorithmName": "tpe",
            "algorithmSettings": [{"name": "random_state", "value": str(seed)}],
        }
        assert ran["experiment"]["earlyStopping"]["enabled"] is False
        assert ran["trial"]["extraArgs"][-1] == f"--seed={seed}"
        assert len(list((out / "runs" / "tpe+none" / f"seed-{seed}" / "nas-katib-nas").glob("*/COMPLETE"))) == 2


def test_the_same_command_again_reads_the_finished_searches_back(
    tiny_compare: tuple[subprocess.CompletedProcess[str], Path, Path],
) -> None:
    first, values, out = tiny_compare
    again = katib_nas("compare", str(values), "--algorithms", "random,tpe+none", "--seeds", "2", "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert " started" not in again.stderr  # no trial ran again
    assert again.stdout == first.stdout


# --- records as copied off a cluster -------------------------------------------------------------

T0 = 1_700_000_000.0


def record(
    experiment: Path,
    name: str,
    value: float | None,
    epochs: int,
    start: float,
    end: float,
    test: float = 0.9,
    stopped_by: str | None = None,
) -> None:
    """A trial record in the contract's layout with the file times of when it started and ended; value
    None is a trial that never completed (no metrics, no COMPLETE)."""
    trial = experiment / name
    trial.mkdir(parents=True)
    (trial / "params.json").write_text(json.dumps({"params": {"lr": 0.01}, "seed": 42, "epochs": 10}))
    curve = [{"epoch": e, "accuracy": 0.5} for e in range(1, epochs + 1)]
    (trial / "curve.json").write_text(json.dumps(curve))
    os.utime(trial / "params.json", (T0 + start, T0 + start))
    os.utime(trial / "curve.json", (T0 + end, T0 + end))
    if value is None:
        return
    metrics = {"accuracy": value, "epochs_run": epochs, "test_accuracy": test, "stopped_by": stopped_by}
    (trial / "metrics.json").write_text(json.dumps(metrics))
    (trial / "model.onnx").write_bytes(b"onnx")
    (trial / "COMPLETE").write_bytes(b"")
    os.utime(trial / "COMPLETE", (T0 + end, T0 + end))


def search(experiment: Path, values: list[float], test: float = 0.9) -> Path:
    """Trials of 10 epochs one after another, 10 s each, with these objectives."""
    for i, v in enumerate(values):
        record(experiment, f"exp-{i:04d}", v, 10, 10.0 * i, 10.0 * i + 10, test=test)
    return experiment


def test_records_copied_off_a_cluster_are_read_as_katib_ran_them(tmp_path: Path) -> None:
    experiment = tmp_path / "nas-katib-nas"
    record(experiment, "nas-0000", 0.90, 10, 0, 30, test=0.88)
    record(experiment, "nas-0001", 0.95, 4, 1, 12, test=0.93, stopped_by="successive-halving")  # ends first
    record(experiment, "nas-0002", None, 3, 12, 20)  # failed after 3 epochs: spent, no result
    record(experiment, "nas-0003", 0.97, 10, 20, 50, test=0.96)
    (experiment / "best.json").write_text(json.dumps({"trial": "nas-0000"}))  # stale: the records decide
    (experiment / ".logs").mkdir()
    (experiment / "study.journal").write_text("")
    run = read_run(experiment, "tpe", "1", "accuracy", maximize=True)
    assert [t.name for t in run.trials] == ["nas-0001", "nas-0002", "nas-0000", "nas-0003"]
    assert [t.finished for t in run.trials] == [12.0, 20.0, 30.0, 50.0]
    assert (run.epochs, run.seconds) == (27, 50.0)
    assert (run.best_trial, run.best_value, run.test_accuracy) == ("nas-0003", 0.97, 0.96)
    reached = time_to_target(run, 0.93, maximize=True)
    assert reached is not None and (reached.epochs, reached.seconds) == (4, 12.0)
    reached = time_to_target(run, 0.96, maximize=True)
    assert reached is not None and (reached.epochs, reached.seconds) == (27, 50.0)
    assert time_to_target(run, 0.98, maximize=True) is None


def test_compare_records_names_a_clear_winner(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    specs = []
    for seed, (good, weak) in enumerate([(0.97, 0.92), (0.96, 0.91), (0.98, 0.90)]):
        specs.append(f"tpe={search(tmp_path / f'tpe-{seed}', [0.85, good])}")
        specs.append(f"random={search(tmp_path / f'random-{seed}', [weak, 0.80], test=0.88)}")
    assert main(["compare", str(MICROK8S), "--records", *specs, "--out", str(tmp_path / "out")]) == 0
    said = capsys.readouterr().out
    assert said.startswith("Winner: tpe, median best accuracy 0.0600 above random; the margin 0.0600 exceeds")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["winner"] == "tpe" and summary["margin_exceeds_spread"] is True
    assert summary["arms"]["tpe"]["best"] == [0.97, 0.96, 0.98]
    assert summary["arms"]["random"]["test_accuracy"] == [0.88, 0.88, 0.88]
    # target: the median of the six final bests (0.92, 0.91, 0.90, 0.97, 0.96, 0.98) is 0.94; tpe reaches
    # it with its second trial (20 trial-epochs), random never does.
    assert summary["target"] == pytest.approx(0.94)
    assert summary["arms"]["tpe"]["epochs_to_target"] == 20 and summary["arms"]["tpe"]["reached_target"] == 3
    assert summary["arms"]["random"]["epochs_to_target"] is None
    assert summary["arms"]["random"]["reached_target"] == 0
    page = (tmp_path / "out" / "compare.html").read_text()
    assert '<tr class="winner"><td>tpe</td>' in page and "not reached (0/3 reached)" in page


def test_a_margin_within_the_seed_spread_is_called_so(tmp_path: Path) -> None:
    runs = [
        read_run(search(tmp_path / f"{arm}-{i}", [v]), arm, str(i), "accuracy", True)
        for arm, values in (("a", [0.95, 0.90, 0.99]), ("b", [0.94, 0.93, 0.96]))
        for i, v in enumerate(values)
    ]
    v = verdict(summarize(runs, 0.9, maximize=True), maximize=True)
    assert (v.winner, v.runner_up) == ("a", "b")
    assert v.margin == pytest.approx(0.01) and v.spread == pytest.approx(0.04509, abs=1e-5)
    assert not v.clear


def test_a_tie_goes_to_the_arm_first_to_the_target(tmp_path: Path) -> None:
    runs = [
        read_run(search(tmp_path / "slow", [0.5, 0.5, 0.9]), "slow", "1", "accuracy", True),
        read_run(search(tmp_path / "quick", [0.9, 0.5, 0.5]), "quick", "1", "accuracy", True),
    ]
    v = verdict(summarize(runs, 0.9, maximize=True), maximize=True)
    assert (v.winner, v.margin, v.decided_by, v.spread) == ("quick", 0.0, "trial-epochs to target", None)
    twin = read_run(search(tmp_path / "twin", [0.9, 0.5, 0.5]), "twin", "1", "accuracy", True)
    v = verdict(summarize([runs[1], twin], 0.9, maximize=True), maximize=True)
    assert v.decided_by == "tie" and not v.clear
    assert verdict_text(v, "accuracy") == (
        "No winner: quick and twin tie on median best accuracy and on median trial-epochs to the target."
    )


def test_a_minimized_objective_wins_low(tmp_path: Path) -> None:
    runs = [
        read_run(search(tmp_path / "a", [0.3, 0.2]), "a", "1", "accuracy", False),
        read_run(search(tmp_path / "b", [0.1, 0.4]), "b", "1", "accuracy", False),
    ]
    assert runs[1].best_value == 0.1
    assert verdict(summarize(runs, 0.2, maximize=False), maximize=False).winner == "b"


def synthetic(arm: str, seed: int, values: list[float | None]) -> SearchRun:
    trials = [Trial(f"t{i}", 10.0 * (i + 1), 1 + i % 3, v) for i, v in enumerate(values)]
    done = [t for t in trials if t.value is not None]
    best = max(done, key=lambda t: t.value or 0.0)
    return SearchRun(arm, str(seed), Path(arm), trials, best.name, best.value or 0.0, None)


objectives = st.lists(st.one_of(st.none(), st.floats(0.0, 1.0)), min_size=1, max_size=6).filter(
    lambda vs: any(v is not None for v in vs)
)


@given(st.lists(st.lists(objectives, min_size=1, max_size=4), min_size=1, max_size=4), st.floats(0.0, 1.0))
def test_the_winner_is_never_behind_and_bands_hold_every_seed(
    arms: list[list[list[float | None]]], target: float
) -> None:
    runs = [synthetic(f"arm{a}", s, values) for a, seeds in enumerate(arms) for s, values in enumerate(seeds)]
    summaries = summarize(runs, target, maximize=True)
    v = verdict(summaries, maximize=True)
    finals = {s.arm: s.final for s in summaries}
    assert all(finals[v.winner] >= f for f in finals.values())
    assert v.margin >= 0 and (v.runner_up is None or v.margin == finals[v.winner] - finals[v.runner_up])
    for s in summaries:
        for axis in ("epochs", "seconds"):
            b = band([r for r in runs if r.arm == s.arm], True, axis)
            assert all(lo <= m <= hi for lo, m, hi in zip(b.low, b.median, b.high, strict=True))
            assert b.high[-1] == max(s.finals) and b.low[-1] == min(s.finals)  # a finished search keeps its best


# --- arms ----------------------------------------------------------------------------------------


def test_arms_set_the_algorithm_its_seed_and_the_rule() -> None:
    assert parse_arms("random, tpe+none,successive-halving") == [
        Arm("random"),
        Arm("tpe", "none"),
        Arm("random", "successive-halving"),
    ]
    data = {
        "experiment": {"algorithm": {"algorithmName": "tpe", "algorithmSettings": [{"name": "gamma", "value": "0.3"}]}}
    }
    tpe = arm_values(data, Arm("tpe", "median"), 7, None)
    assert tpe["experiment"]["algorithm"]["algorithmSettings"] == [
        {"name": "gamma", "value": "0.3"},
        {"name": "random_state", "value": "7"},
    ]
    assert tpe["experiment"]["earlyStopping"] == {"enabled": True, "algorithmName": "median"}
    assert tpe["trial"]["extraArgs"] == ["--seed=7"]
    sobol = arm_values(data, Arm("sobol"), 7, None)  # goptuna's sobol reads no settings: only the trainer's seed
    assert sobol["experiment"]["algorithm"] == {"algorithmName": "sobol", "algorithmSettings": []}
    assert data["experiment"]["algorithm"]["algorithmName"] == "tpe"  # the file's values are left as they were


# --- bad input -----------------------------------------------------------------------------------


def bad_cases(tmp_path: Path) -> list[tuple[list[str], str]]:
    empty = tmp_path / "empty"
    empty.mkdir()
    unfinished = tmp_path / "unfinished"
    record(unfinished, "t-0000", None, 2, 0, 5)
    good = search(tmp_path / "good", [0.9])
    zero_min = tmp_path / "zero-min.yaml"
    zero_min.write_text(MICROK8S.read_text())  # the chart's dropout starts at 0.0, which skopt refuses
    return [
        (["--algorithms", "hyperband"], "--algorithms: 'hyperband' is not an algorithm the local runner runs"),
        (["--algorithms", "tpe+patience"], "'patience' is not an early-stopping rule"),
        (["--algorithms", "tpe,tpe"], "--algorithms: tpe is named twice"),
        (["--algorithms", ""], "--algorithms: '' is not an algorithm"),
        (["--seeds", "0"], "--seeds 0: give 1 or more"),
        (["--target", "nan"], "--target nan: give a finite accuracy value"),
        (["--records", str(good)], "write ARM=DIR"),
        (["--records", f"tpe={tmp_path / 'missing'}"], "missing: no such directory of trial records"),
        (["--records", f"tpe={empty}"], "empty: no trial records (*/params.json)"),
        (["--records", f"tpe={unfinished}"], "unfinished: no complete trial with accuracy"),
        (["--records", f"tpe={good}", "--seeds", "2"], "--records reads searches that already ran"),
        (
            ["--algorithms", "bayesianoptimization", "--seeds", "1", str(zero_min)],
            "zero-min.yaml [bayesianoptimization, seed 1]: experiment.parameters[3].feasibleSpace.min: 0.0 must be > 0",
        ),
    ]


def test_bad_input_gets_one_line_and_exit_2_with_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i, (args, expected) in enumerate(bad_cases(tmp_path)):
        out = tmp_path / f"out-{i}"
        values = [a for a in args if a.endswith(".yaml")] or [str(MICROK8S)]
        argv = ["compare", values[0], *[a for a in args if not a.endswith(".yaml")], "--out", str(out)]
        assert main(argv) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err, (args, err)
        assert not out.exists(), args


def test_an_out_folder_with_a_search_of_other_values_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "out" / "runs" / "random" / "seed-1"
    folder.mkdir(parents=True)
    (folder / "values.yaml").write_text("experiment: {maxTrialCount: 99}\n")
    proc = katib_nas("compare", str(MICROK8S), "--algorithms", "random", "--seeds", "1", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    said = f"{folder}: holds a search of other values (another values file or arm); use another --out or delete"
    assert proc.stderr.splitlines() == [f"{said} that folder"]
    assert not (tmp_path / "out" / "compare.html").exists()
