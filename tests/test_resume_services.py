"""A resumed search (resumePolicy FromVolume) against Katib v0.19's suggestion services themselves.

When the Experiment finishes, Katib deletes the suggestion Deployment; once maxTrialCount is raised it
starts a new service process whose first GetSuggestions request carries every trial so far, and
sends a failed request again, unchanged, until it is answered. `katibcheck resume` runs each case's
search on one service instance, then sends the request of the restart, built by Katib's suggestion
client, both to that instance (LongRunning keeps the service) and, as often as Katib would, to a
new one: goptuna's service in katibcheck itself, the Python services' own code in their venvs
(ci/suggestion_validate.py SERVICE suggest). The generator must refuse FromVolume for exactly the
services whose new process fails the search, and warn for exactly the seeded searches whose new
process suggests trials that already ran (the kept one never does).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from generator.models import Experiment
from generator.profiles import load_profile
from generator.suggestion_services import (
    FROZEN_POLICY,
    RESUME_FAILURES,
    SERVICE_ALGORITHMS,
    SETTINGS,
    check_later_requests,
    check_one_request,
    check_resume,
)
from generator.validate import validate_data

from .conftest import ROOT
from .katib_harness import katibcheck
from .test_suggestion_services import SERVICES, service_command

# Katib's own example Experiment for each algorithm (examples/v1beta1 in the Katib module).
EXAMPLES = {
    "random": "hp-tuning/random.yaml",
    "tpe": "hp-tuning/tpe.yaml",
    "grid": "hp-tuning/grid.yaml",
    "cmaes": "hp-tuning/cma-es.yaml",
    "sobol": "hp-tuning/sobol.yaml",
    "multivariate-tpe": "hp-tuning/multivariate-tpe.yaml",
    "bayesianoptimization": "hp-tuning/bayesian-optimization.yaml",
    "hyperband": "hp-tuning/hyperband.yaml",
    "pbt": "hp-tuning/simple-pbt.yaml",
    "enas": "nas/enas-cpu.yaml",
    "darts": "nas/darts-cpu.yaml",
}
# Trials asked for in each round before the restart, and the rounds: two or more trials, so that a
# process needing one refused request per trial (trials + 1 in all) differs from one needing two.
REQUESTS = (2, 3)
ROUNDS = (1, 2)


def _example(algorithm: str, service: str) -> dict[str, Any]:
    experiment: dict[str, Any] = yaml.safe_load(
        (SERVICES / "katib" / "examples" / "v1beta1" / EXAMPLES[algorithm]).read_text()
    )
    spec = experiment["spec"]
    spec["algorithm"]["algorithmName"] = algorithm
    if service in ("optuna", "goptuna") and algorithm != "cmaes":  # the examples' settings are hyperopt's
        spec["algorithm"].pop("algorithmSettings", None)
    return experiment


def _hyperband() -> dict[str, Any]:
    """Katib's hyperband example at eta 2 and r_l 4: a first rung of as many trials as the first request
    asks for, on a budget of 1 epoch, then rungs of the best of those on 2 and 4."""
    experiment = _example("hyperband", "hyperband")
    spec = experiment["spec"]
    spec["algorithm"]["algorithmSettings"] = [
        {"name": "resource_name", "value": "num-epochs"},
        {"name": "eta", "value": "2"},
        {"name": "r_l", "value": "4"},
    ]
    spec["parameters"][2]["feasibleSpace"]["max"] = "4"
    return experiment


def cases(service: str) -> list[dict[str, Any]]:
    out = []
    for algorithm in SERVICE_ALGORITHMS[service]:
        experiment = _example(algorithm, service)
        if service == "hyperband":
            # Katib's hyperband answers a later request with the top ceil(n/eta) of the bracket before:
            # 4 trials, then 1 (its state is in the request); a later request for more fails (below).
            out.append({"experiment": _hyperband(), "requests": 4, "rounds": 1, "restartRequests": 1})
            continue
        # darts answers only its process's first request (its GetSuggestions sets num_layers then).
        for rounds in (1,) if service == "darts" else ROUNDS:
            out += [{"experiment": experiment, "requests": n, "rounds": rounds} for n in REQUESTS]
        if "random_state" in SETTINGS.get((service, algorithm), {}):
            # Seeded: before and past skopt's 10 initial random points.
            seeded = copy.deepcopy(experiment)
            seeded["spec"]["algorithm"]["algorithmSettings"] = [{"name": "random_state", "value": "5"}]
            out += [{"experiment": seeded, "requests": n, "rounds": rounds} for n in REQUESTS for rounds in (1, 4)]
    return out


def fails(result: dict[str, Any]) -> bool:
    """Whether the new process fails the resumed search: it never answers, or answers only after
    refusing one request per trial, having dropped each (Katib waits longer before every retry)."""
    trials, attempts = result["trials"], result["attempts"]
    # Every outcome seen: at once, after one refusal (hyperopt's tpe), after one per trial, never.
    assert attempts in (0, 1, 2, trials + 1), result
    return attempts in (0, trials + 1)


def _judged(service: str, case: dict[str, Any], trials: int) -> tuple[list[str], list[str]]:
    """The generator's errors and warnings for the case's Experiment with resumePolicy FromVolume,
    maxTrialCount the trials the restart carries."""
    spec = case["experiment"]["spec"]
    e = Experiment.model_validate(
        {
            "algorithm": spec["algorithm"],
            "parallelTrialCount": case["requests"],
            "maxTrialCount": trials,
            "resumePolicy": "FromVolume",
        }
    )
    findings = list(check_resume(e, {spec["algorithm"]["algorithmName"]: service}, explicit=True))
    return [m for _, m, warning in findings if not warning], [m for _, m, warning in findings if warning]


@pytest.mark.parametrize("service", sorted(SERVICE_ALGORITHMS))
def test_the_generator_refuses_fromvolume_for_exactly_the_services_a_restart_breaks(
    service: str, tmp_path: Path
) -> None:
    batch = cases(service)
    if service == "goptuna":
        results = katibcheck("resume", batch)
    else:
        # enas imports TensorFlow (quietened) and keeps its controller's cache in the working
        # directory; pbt its trials' checkpoints under data/ there (the PVC, in a cluster).
        driver, env = service_command(service, "suggest", TF_CPP_MIN_LOG_LEVEL="3")
        results = katibcheck("resume", batch, driver, env, tmp_path)
    seen = {}
    for case, result in zip(batch, results, strict=True):
        algorithm = case["experiment"]["spec"]["algorithm"]["algorithmName"]
        assert "before" not in result, (service, case, result)
        # The service kept running answers, except darts past its first request.
        assert ("kept" in result) == (service == "darts"), (service, algorithm, result)
        broken = fails(result)
        refused, warned = _judged(service, case, result["trials"])
        assert bool(refused) == broken, (service, algorithm, result, refused)
        if not broken and "random_state" in SETTINGS.get((service, algorithm), {}):
            # A new process that takes the trials may still draw the first points again (seeded;
            # NAS services and hyperband suggest what ran before by design).
            assert result["keptRepeats"] == 0, result
            assert bool(warned) == (result["repeats"] > 0), (service, case["experiment"]["spec"], result, warned)
        seen[algorithm, broken, result.get("repeats", 0) > 0] = result.get("error", "answered at once")[:100]
    print(f"\n{service}: {len(batch)} resumed searches (algorithm, fails, repeats): {seen}")


def test_a_refusal_names_the_service_the_reason_and_the_fix() -> None:
    grid = {"experiment": {"spec": {"algorithm": {"algorithmName": "grid"}}}, "requests": 2}
    (message,), _ = _judged("optuna", grid, 6)
    assert message == (
        "FromVolume: Katib's optuna service keeps its state in memory: a resumed search fails (a new service "
        f"process {RESUME_FAILURES['optuna']}); use LongRunning, which keeps the service running, or Never "
        "(for an Experiment already installed, whose resumePolicy Katib keeps, also set a new experiment.name)"
    )


GRID = {
    "algorithm": {"algorithmName": "grid"},
    "maxTrialCount": 4,
    "parameters": [
        {"name": "units", "parameterType": "categorical", "feasibleSpace": {"list": ["64", "128"]}},
        {"name": "lr", "parameterType": "discrete", "feasibleSpace": {"list": ["0.01", "0.1"]}},
    ],
}


@pytest.mark.parametrize(
    ("experiment", "services", "expected"),
    [
        (GRID, None, "FromVolume (the chart's default): Katib's optuna service"),
        ({**GRID, "resumePolicy": "FromVolume"}, None, "FromVolume: Katib's optuna service"),
        ({**GRID, "resumePolicy": "LongRunning"}, None, None),
        ({**GRID, "resumePolicy": "Never"}, None, None),
        # The judgement follows the cluster's katib-config, not the algorithm's name.
        ({"algorithm": {"algorithmName": "tpe"}}, None, None),
        (
            {"algorithm": {"algorithmName": "tpe"}},
            {"tpe": "optuna"},
            "FromVolume (the chart's default): Katib's optuna",
        ),
        (
            {"algorithm": {"algorithmName": "random"}},
            {"random": "goptuna"},
            "FromVolume (the chart's default): Katib's goptuna",
        ),
        ({**GRID, "resumePolicy": "FromVolume"}, {"grid": "hyperopt"}, None),
    ],
)
def test_validate_refuses_fromvolume_in_one_line_per_the_clusters_services(
    experiment: dict[str, Any], services: dict[str, str] | None, expected: str | None
) -> None:
    data = yaml.safe_load((ROOT / "values" / "microk8s.yaml").read_text())
    data["experiment"] = {**data["experiment"], **copy.deepcopy(experiment)}
    profile = load_profile("microk8s", None).model_copy(update={"suggestionServices": services})
    report = validate_data(data, "v.yaml", profile=profile)
    lines = [str(p) for p in report.problems if p.path == "experiment.resumePolicy"]
    assert len(lines) == (expected is not None), lines
    if expected is not None:
        assert lines[0].startswith(f"v.yaml: experiment.resumePolicy: {expected}"), lines
        assert lines[0].endswith(f"or Never ({FROZEN_POLICY})"), lines


@pytest.mark.parametrize("path", [*sorted((ROOT / "values").glob("*.yaml")), ROOT / "ci" / "realnode-values.yaml"])
def test_the_repositorys_values_files_resume_as_their_service_can(path: Path) -> None:
    from generator.validate import validate_file

    assert [str(p) for p in validate_file(path).problems if p.path == "experiment.resumePolicy"] == []


def test_a_seeded_search_that_would_repeat_its_trials_on_resuming_is_a_warning() -> None:
    data = yaml.safe_load((ROOT / "values" / "microk8s.yaml").read_text())
    seeded = {"algorithmName": "random", "algorithmSettings": [{"name": "random_state", "value": "3"}]}
    data["experiment"] = {**data["experiment"], "algorithm": seeded}
    report = validate_data(data, "v.yaml")
    assert [str(p) for p in report.problems if p.path == "experiment.resumePolicy"] == [
        "v.yaml: warning: experiment.resumePolicy: FromVolume (the chart's default) with random_state: a new process "
        "of Katib's hyperopt service draws the search's first points again, so a resumed search repeats trials "
        "already run; use LongRunning or leave random_state out"
    ]
    assert report.errors == []


def test_darts_answers_only_its_first_request_and_the_generator_refuses_a_second(tmp_path: Path) -> None:
    """Katib's darts service reads the nasConfig's num_layers on its process's first request alone: a
    search of two rounds fails at the second, and so does LongRunning's resume (the kept process asked
    again), while a new process (FromVolume) answers. The generator refuses exactly the searches that
    ask one darts process twice."""
    experiment = _example("darts", "darts")
    shapes = [(n, rounds) for n in (1, 2) for rounds in (1, 2)]  # trials per request, requests
    batch = [{"experiment": experiment, "requests": n, "rounds": rounds} for n, rounds in shapes]
    driver, env = service_command("darts", "suggest", TF_CPP_MIN_LOG_LEVEL="3")
    results = katibcheck("resume", batch, driver, env, tmp_path)
    for (n, rounds), case, result in zip(shapes, batch, results, strict=True):
        assert ("before" in result) == (rounds > 1), (case, result)
        for policy in ("Never", "LongRunning", "FromVolume"):
            e = Experiment.model_validate(
                {
                    "algorithm": {"algorithmName": "darts"},
                    "parallelTrialCount": n,
                    "maxTrialCount": n * rounds,
                    "resumePolicy": policy,
                }
            )
            refused = {path for path, _, warning in check_one_request(e, None) if not warning}
            assert ("experiment.maxTrialCount" in refused) == (rounds > 1), (case, policy, refused)
            if rounds == 1:
                # Resumed: the kept process fails (LongRunning), a new one answers (FromVolume).
                resumed_fails = {"LongRunning": "kept" in result, "FromVolume": fails(result), "Never": False}
                assert ("experiment.resumePolicy" in refused) == resumed_fails[policy], (case, policy, result)


def test_hyperband_answers_later_requests_for_more_than_one_trial_short_and_the_generator_warns(
    tmp_path: Path,
) -> None:
    """Katib's hyperband sizes its first rung by the first request, then answers a request for k trials
    with fewer than k whenever k > 1, which Katib's suggestion controller refuses (and asks again, for
    as many or more). Katib asks for as many trials as finished since it last reconciled, so a search
    past its first parallelTrialCount trials stalls when two finish together: the generator warns for
    exactly those searches."""
    later = [(), (1,), (1, 1), (2,), (3,), (1, 2)]  # the requests after a first rung of 4
    batch = [{"experiment": _hyperband(), "roundRequests": [4, *k], "requests": 4} for k in later]
    driver, env = service_command("hyperband", "suggest")
    results = katibcheck("resume", batch, driver, env, tmp_path)
    for k, result in zip(later, results, strict=True):
        short = any(n > 1 for n in k)
        assert ("before" in result) == short, (k, result)
        if short:
            assert "The response contains unexpected trials" in result["before"], result
    for parallel, trials in ((4, 4), (4, 5), (4, 12), (9, 9)):
        e = Experiment.model_validate(
            {"algorithm": _hyperband()["spec"]["algorithm"], "parallelTrialCount": parallel, "maxTrialCount": trials}
        )
        findings = list(check_later_requests(e, None))
        assert all(warning for _, _, warning in findings), findings
        assert bool(findings) == (trials > parallel), (parallel, trials, findings)
        if findings:
            ((path, message, _),) = findings
            assert path == "experiment.maxTrialCount"
            assert message.startswith(f"{trials} trials, {parallel} at once, with hyperband: after its first"), message
            assert message.endswith(
                "set maxTrialCount to parallelTrialCount (one rung, as Katib's hyperband example does) or choose "
                "another algorithm"
            ), message
