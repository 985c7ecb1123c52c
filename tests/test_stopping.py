"""Early-stopping rules on recorded curves, and a trial that stops itself from its peers' curves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from katib_nas_contract.stopping import (
    Rule,
    halving_stop,
    is_rung,
    katib_medianstop_stop,
    katib_medianstop_target,
    median_stop,
    peer_curves,
)

from .conftest import train_trial

GOOD = [0.80, 0.88, 0.92, 0.94, 0.95, 0.96]
OK = [0.70, 0.82, 0.88, 0.91, 0.93, 0.94]
BAD = [0.30, 0.45, 0.55, 0.60, 0.62, 0.63]
LATE_BLOOMER = [0.20, 0.40, 0.85, 0.97, 0.98, 0.99]
MEDIAN = Rule("median", start_step=3, min_trials=2)


def test_median_compares_running_averages_at_every_step() -> None:
    peers = [GOOD, OK, GOOD]
    assert not median_stop(BAD[:2], peers, MEDIAN)  # before start_step
    assert median_stop(BAD[:3], peers, MEDIAN)  # mean(.30,.45,.55)=.43 < median(.867,.80,.867)
    assert not median_stop(OK[:3], [GOOD, BAD], MEDIAN)  # .80 vs median(.867, .433) = .65
    assert not median_stop(BAD[:3], [GOOD], MEDIAN)  # one peer < min_trials
    # Only peers that reached step t count: a peer stopped at 3 epochs says nothing about step 5.
    assert not median_stop(OK[:5], [GOOD[:3], BAD[:3]], MEDIAN)


def test_median_for_a_minimized_metric() -> None:
    loss = Rule("median", maximize=False, start_step=2, min_trials=2)
    assert median_stop([2.0, 1.8], [[1.0, 0.5], [1.2, 0.7]], loss)
    assert not median_stop([1.0, 0.4], [[1.0, 0.5], [1.2, 0.7]], loss)


def test_successive_halving_keeps_the_top_third_at_each_rung() -> None:
    sh = Rule("successive-halving", start_step=1, min_trials=3, eta=3)
    assert [t for t in range(1, 30) if is_rung(t, sh)] == [1, 3, 9, 27]
    peers = [GOOD, [0.75] * 6, BAD, LATE_BLOOMER, [0.5] * 6]
    assert not halving_stop(GOOD[:1], peers, sh)  # the best at rung 1 goes on
    assert halving_stop(OK[:1], peers, sh)  # 6 at the rung keep 2; OK (.70) is third behind .80 and .75
    assert not halving_stop([0.75], [GOOD, [0.75] * 6, BAD, LATE_BLOOMER, [0.5] * 6], sh)  # a tie keeps going
    assert not halving_stop(OK[:2], peers, sh)  # epoch 2 is not a rung
    assert not halving_stop(BAD[:3], [GOOD], sh)  # 2 at the rung < max(min_trials, eta)


def test_katib_medianstop_uses_the_mean_of_succeeded_trials_and_the_best_value_so_far() -> None:
    assert katib_medianstop_target([GOOD, OK], start_step=3, min_trials=3) is None
    target = katib_medianstop_target([GOOD, OK, BAD], start_step=3, min_trials=3)
    assert target == pytest.approx((0.8667 + 0.80 + 0.4333) / 3, abs=1e-3)
    assert not katib_medianstop_stop(BAD[:2], target, True, 3)  # before start_step
    assert katib_medianstop_stop(BAD[:3], target, True, 3)  # best .55 < .70
    assert not katib_medianstop_stop(LATE_BLOOMER[:3], target, True, 3)  # best .85


def test_peer_curves_reads_the_other_trials_and_skips_broken_files(tmp_path: Path) -> None:
    for trial, curve in {"a": GOOD, "b": BAD, "me": OK}.items():
        (tmp_path / trial).mkdir()
        points = [{"epoch": i + 1, "accuracy": v} for i, v in enumerate(curve)]
        (tmp_path / trial / "curve.json").write_text(json.dumps(points))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "curve.json").write_text("{not json")
    assert sorted(peer_curves(tmp_path, "me", "accuracy")) == sorted([GOOD, BAD])


def test_a_weak_trial_stops_itself_from_its_peers_curves(tmp_path: Path) -> None:
    common = ["--epochs=8", "--units=64", "--num-layers=1"]
    for name in ("peer-1", "peer-2"):
        train_trial(tmp_path, "exp", name, *common, f"--seed={len(name) + int(name[-1])}")
    flags = ["--early-stopping=median", "--es-start-step=2", "--es-min-trials=2"]
    weak = train_trial(tmp_path, "exp", "weak", *common, "--lr=0.00001", "--optimizer=sgd", *flags)
    metrics = json.loads((weak / "metrics.json").read_text())
    assert (metrics["ended"], metrics["stopped_by"], metrics["epochs_run"]) == ("early_stopped", "median", 2)
    assert (weak / "COMPLETE").is_file() and (weak / "model.onnx").is_file()
    strong = train_trial(tmp_path, "exp", "strong", *common, "--lr=0.01", *flags)
    assert json.loads((strong / "metrics.json").read_text())["ended"] == "completed"
