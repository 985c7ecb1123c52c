"""The local runner gives each algorithm the meaning of the Katib service the profile's
suggestionServices maps it to (Katib v0.19 standalone's katib-config when the profile names none):
`tpe` is hyperopt's TPE by default, Optuna's or goptuna's TPE where a cluster serves it so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from generator.errors import LocalRunError
from generator.local.plan import plan
from generator.local.runner import LocalRunner
from generator.local.samplers import LOCAL, STAND_INS, sampler_for
from generator.models import Experiment
from generator.suggestion_services import KATIB_V019_SERVICES, SERVICE_ALGORITHMS
from generator.validate import validate_file

from .conftest import ROOT

# A space every algorithm takes (grid needs a step on doubles).
SPACE = [
    {"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.01", "max": "0.05", "step": "0.01"}},
    {"name": "units", "parameterType": "int", "feasibleSpace": {"min": "16", "max": "64"}},
]


def _experiment(algorithm: str, settings: dict[str, str], parallel: int = 3) -> Experiment:
    return Experiment.model_validate(
        {
            "parallelTrialCount": parallel,
            "parameters": SPACE,
            "algorithm": {
                "algorithmName": algorithm,
                "algorithmSettings": [{"name": n, "value": v} for n, v in settings.items()],
            },
        }
    )


def _tpe(sampler: Any) -> tuple[int, int, bool, bool]:
    return sampler._n_startup_trials, sampler._n_ei_candidates, bool(sampler._multivariate), sampler._constant_liar


@pytest.mark.parametrize(
    ("service", "settings", "expected"),
    [
        # hyperopt: random for Katib's first batch (parallelTrialCount), no constant liar.
        ("hyperopt", {"n_EI_candidates": "7"}, (3, 7, False, False)),
        # Katib's Optuna service: Optuna's TPESampler with its settings and constant_liar=True.
        ("optuna", {"n_startup_trials": "5", "n_ei_candidates": "9"}, (5, 9, False, True)),
        ("optuna", {}, (10, 24, False, True)),
        # goptuna's TPE: Optuna's defaults, no constant liar.
        ("goptuna", {"n_startup_trials": "4"}, (4, 24, False, False)),
    ],
)
def test_tpe_means_the_tpe_of_the_service_that_serves_it(
    service: str, settings: dict[str, str], expected: tuple[int, int, bool, bool]
) -> None:
    sampler = sampler_for(_experiment("tpe", settings), "f.yaml", 0, {"tpe": service})
    assert _tpe(sampler) == expected


def test_no_mapping_means_katibs_default_katib_config() -> None:
    e = _experiment("tpe", {"n_EI_candidates": "7"})
    assert _tpe(sampler_for(e, "f.yaml", 0)) == _tpe(sampler_for(e, "f.yaml", 0, KATIB_V019_SERVICES))
    assert _tpe(sampler_for(e, "f.yaml", 0)) == (3, 7, False, False)


@pytest.mark.parametrize("service", ["goptuna", "optuna"])
def test_cmaes_takes_its_services_sigma(service: str) -> None:
    e = _experiment("cmaes", {"restart_strategy": "ipop", "sigma": "0.5"})
    sampler: Any = sampler_for(e, "f.yaml", 0, {"cmaes": service})
    assert sampler._sigma0 == 0.5 and sampler._n_startup_trials == 1


def test_every_algorithm_a_service_implements_has_a_stand_in_or_is_refused_in_one_line() -> None:
    for service, algorithms in SERVICE_ALGORITHMS.items():
        for algorithm in algorithms:
            e = _experiment(algorithm, {})
            if (service, algorithm) in STAND_INS:
                sampler_for(e, "f.yaml", 0, {algorithm: service})
                continue
            with pytest.raises(LocalRunError) as raised:
                sampler_for(e, "f.yaml", 0, {algorithm: service})
            assert "\n" not in str(raised.value)
            assert str(raised.value).startswith(f"f.yaml: experiment.algorithm.algorithmName: {algorithm} ")
    assert {a for _, a in STAND_INS} == set(LOCAL)


def test_a_service_the_local_runner_has_no_stand_in_for_is_named() -> None:
    with pytest.raises(LocalRunError) as raised:
        sampler_for(_experiment("tpe", {}), "f.yaml", 0, {"tpe": "mysuggestion"})
    assert str(raised.value) == (
        "f.yaml: experiment.algorithm.algorithmName: tpe as the profile's cluster serves it (Katib's mysuggestion "
        "service) has no local equivalent; the local runner runs tpe as hyperopt, optuna, goptuna serve it"
    )


def test_a_local_run_follows_the_profiles_suggestion_services(tmp_path: Path) -> None:
    """A cluster whose katib-config serves tpe with Optuna: validate takes Optuna's n_startup_trials
    (hyperopt's tpe would refuse it) and the runner's study samples with Optuna's TPE and its settings."""
    profile = yaml.safe_load((ROOT / "generator" / "profiles" / "microk8s.yaml").read_text())
    profile.update(name="lab", suggestionServices={**KATIB_V019_SERVICES, "tpe": "optuna"})
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump(profile))
    data = yaml.safe_load((ROOT / "values" / "microk8s.yaml").read_text())
    data["profile"] = "lab.yaml"
    data["experiment"]["algorithm"] = {
        "algorithmName": "tpe",
        "algorithmSettings": [{"name": "n_startup_trials", "value": "5"}, {"name": "random_state", "value": "3"}],
    }
    data["experiment"]["resumePolicy"] = "LongRunning"  # Optuna's service cannot resume FromVolume
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(data))
    report = validate_file(values)
    assert [str(p) for p in report.errors] == []
    runner = LocalRunner(plan(report, "local"), tmp_path / "models")
    assert _tpe(runner.study.sampler) == (5, 24, False, True)

    # The same file on Katib's default mapping: hyperopt's tpe has no n_startup_trials.
    data["profile"] = "microk8s"
    values.write_text(yaml.safe_dump(data))
    assert [p.path for p in validate_file(values).errors] == ["experiment.algorithm.algorithmSettings[0].name"]
