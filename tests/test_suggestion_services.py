"""The generator's algorithm-settings check against Katib v0.19's suggestion services themselves.

Each generated case is an Experiment (algorithm, settings, search space or nasConfig, trial
counts); Katib's own code judges it: the Python services' ValidateAlgorithmSettings (hyperopt,
optuna, skopt, hyperband, pbt, and the NAS services enas and darts, which judge the nasConfig too)
in their own venvs from ci/install-suggestion-services.sh, on the request Katib's suggestion
controller builds (katibcheck convert), and goptuna's through katibcheck. The generator must refuse
exactly the cases the service refuses.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from generator.models import ChartValues, Experiment
from generator.suggestion_services import SERVICE_ALGORITHMS, SETTINGS, check_algorithm_settings
from generator.validate import validate_data

from .conftest import ROOT, by_kind, helm_template
from .katib_harness import katibcheck

SERVICES = ROOT / ".tools" / "suggestion"
BATCH = 40
# How many cases each service judged in this run (printed at the end of the module).
TRIED: dict[str, int] = {}

DOUBLE = {"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.0005", "max": "0.01"}}
INT = {"name": "num-layers", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "3"}}
CAT = {"name": "units", "parameterType": "categorical", "feasibleSpace": {"list": ["64", "128", "256"]}}
SPACES = [
    [DOUBLE, INT, CAT],
    [CAT],
    [DOUBLE],
    [DOUBLE, {"name": "dropout", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "0.4"}}],
    [
        {**INT, "feasibleSpace": {"min": "1", "max": "3", "step": "1"}},
        {"name": "dropout", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "0.4", "step": "0.1"}},
        CAT,
    ],
    [{"name": "dropout", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "0.3", "step": "0.15"}}, CAT],
    [
        {**INT, "feasibleSpace": {"min": "1", "max": "9", "step": "2"}},
        {**DOUBLE, "feasibleSpace": {"min": "1e-3", "max": "0.1"}},
    ],
]  # fmt: skip
VALUES = [
    "0", "1", "-1", "5", "+3", " 4", "4 ", "1_000", "0x10", "010", "1.5", "-0.5", "0.5", "0.25", "1e3", "1e-3", "1e400",
    "-1e400", "1e-400", "nan", "NaN", "inf", "-inf", "Infinity", "abc", "", "٣", "0x1p-2", "9223372036854775807",
    "9223372036854775808", ".5", "5.", "1.0", "ipop", "bipop", "none", "None", "GP", "RF", "ET", "GBRT", "gp", "EI",
    "LCB", "gp_hedge", "PIps", "lbfgs", "auto", "sampling", "1_0", "1__0", "_1", "0x1p0_0", "+nan", "-0", "0x1_0p0",
]  # fmt: skip
# The edges of every range a service checks.
BOUNDARIES = ["0", "1", "-1", "0.0", "1.0", "-0.0", "1e-9", "0.999", "1.001", "-1e-9", "2", "5", "4"]
OTHER_NAMES = ["seed", "sigma0", "bogus", "random_state", "n_startup_trials", "gamma", "n_EI_candidates"]
NAS_SERVICES = ("enas", "darts")


def _without_empty(node: dict[str, Any]) -> dict[str, Any]:
    """Leave out what is unset, as a user would (Katib's types read a missing field as empty)."""
    return {k: v for k, v in node.items() if v is not None and v != ""}


@st.composite
def nas_configs(draw: st.DrawFn) -> dict[str, Any]:
    """nasConfigs of the types Katib's Experiment holds, with each part the services check present,
    empty or wrong: graph sizes and layers, operation types, parameter names, types and spaces."""
    step = st.one_of(
        st.sampled_from(["0.1", "", "0", "-0.5", "abc", "nan", "inf", " 0.2", "1_0"]), st.sampled_from(BOUNDARIES)
    )
    parameter = st.builds(
        lambda name, kind, low, high, step, values: _without_empty(
            {
                "name": name,
                "parameterType": kind,
                "feasibleSpace": _without_empty({"min": low, "max": high, "step": step, "list": values}) or None,
            }
        ),
        st.sampled_from(["filter_size", "num_filter", ""]),
        st.sampled_from(["categorical", "categorical", "discrete", "int", "double", "", "float"]),
        st.sampled_from(["", "1", "0.1"]),
        st.sampled_from(["", "5", "0.5"]),
        step,
        st.sampled_from([[], ["3"], ["3", "5"]]),
    )
    operation = st.builds(
        lambda kind, parameters: _without_empty({"operationType": kind, "parameters": parameters or None}),
        st.sampled_from(["convolution", "skip_connection", "reduction", ""]),
        st.lists(parameter, max_size=2),
    )
    graph = _without_empty(
        {
            # Mostly what enas needs, so that cases with one thing wrong are common.
            "numLayers": draw(st.sampled_from([4, 1, 1, -1, 0, None])),
            "inputSizes": draw(st.sampled_from([[28, 28, 1], [28, 28, 1], [3], [], None])),
            "outputSizes": draw(st.sampled_from([[10], [10], [], None])),
        }
    )
    return _without_empty({"graphConfig": graph or None, "operations": draw(st.lists(operation, max_size=3)) or None})


@st.composite
def cases(draw: st.DrawFn, service: str) -> dict[str, Any]:
    algorithm = draw(st.sampled_from(SERVICE_ALGORITHMS[service]))
    value = st.one_of(
        st.sampled_from(BOUNDARIES), st.sampled_from(VALUES), st.integers(-3, 40).map(str), st.floats().map(str)
    )
    if service == "hyperband":
        pool = {
            "r_l": st.sampled_from(["9", "27", "0", "-1", "1", "0.5", "abc", "1e3", "nan", "inf", "2.5"]),
            "eta": st.sampled_from(["3", "2", "1", "0", "-2", "abc", "2.9", "inf", "nan", "1e30"]),
            "resource_name": st.sampled_from(["num-layers", "lr", "epochs"]),
        }
        chosen = draw(st.lists(st.sampled_from(sorted(pool)), unique=True, max_size=3))
        pairs = [(name, draw(pool[name])) for name in chosen]
    elif service == "pbt":
        pool = {
            "suggestion_trial_dir": st.just("/var/log/katib/checkpoints/"),
            "n_population": st.sampled_from(["5", "4", "10", "x", "5.0", " 6"]),
            "truncation_threshold": st.sampled_from(["0.2", "0", "1", "1.5", "-0.1", "nan", "x"]),
            "resample_probability": st.sampled_from(["0.5", "0", "2"]),
        }
        chosen = draw(st.lists(st.sampled_from(sorted(pool)), unique=True, max_size=4))
        pairs = [(name, draw(pool[name])) for name in chosen]
    else:
        known = sorted(SETTINGS.get((service, algorithm), {})) or OTHER_NAMES
        name = st.one_of(st.sampled_from(known), st.sampled_from(OTHER_NAMES))
        pairs = draw(st.lists(st.tuples(name, value), max_size=3))
    nas = service in NAS_SERVICES
    space = [] if nas else draw(st.sampled_from(SPACES))
    parallel = draw(st.integers(1, 30))
    return {
        "algorithm": algorithm,
        "settings": [{"name": n, "value": v} for n, v in pairs],
        "parameters": space,
        "parallelTrialCount": parallel,
        "maxTrialCount": draw(st.integers(parallel, 40)),
        **({"nasConfig": draw(nas_configs())} if nas else {}),
    }


@pytest.fixture(scope="module")
def base() -> tuple[dict[str, Any], ChartValues]:
    data = yaml.safe_load((ROOT / "values" / "microk8s.yaml").read_text())
    data["experiment"]["earlyStopping"] = {"enabled": False}
    report = validate_data(data, "microk8s.yaml")
    assert report.values is not None
    (experiment,) = by_kind(helm_template(values=data), "Experiment")
    return experiment, report.values


def _katib_experiment(template: dict[str, Any], case: dict[str, Any]) -> dict[str, Any]:
    experiment = copy.deepcopy(template)
    spec = experiment["spec"]
    spec["algorithm"] = {"algorithmName": case["algorithm"], "algorithmSettings": case["settings"]}
    spec["parameters"] = case["parameters"]
    if "nasConfig" in case:
        spec["nasConfig"] = case["nasConfig"]
    spec["parallelTrialCount"] = case["parallelTrialCount"]
    spec["maxTrialCount"] = case["maxTrialCount"]
    return experiment


def _generator_refuses(values: ChartValues, case: dict[str, Any], service: str) -> list[str]:
    e = values.experiment.model_dump()
    e["algorithm"] = {"algorithmName": case["algorithm"], "algorithmSettings": case["settings"]}
    e.update(parameters=case["parameters"], parallelTrialCount=case["parallelTrialCount"])
    e.update(maxTrialCount=case["maxTrialCount"], maxFailedTrialCount=1, nasConfig=case.get("nasConfig"))
    experiment = Experiment.model_validate(e)
    findings = check_algorithm_settings(experiment, {case["algorithm"]: service})
    return [f"{path}: {message}" for path, message, warning in findings if not warning]


def service_command(service: str, *args: str, **extra_env: str) -> tuple[list[str], dict[str, str]]:
    """The command and environment that run ci/suggestion_validate.py in the service's own venv."""
    python = SERVICES / service / "bin" / "python"
    if not python.is_file():
        pytest.fail(f"{python} is missing: run `bash ci/install-suggestion-services.sh` first", pytrace=False)
    katib = (SERVICES / "katib").resolve()
    if not (katib / "pkg").is_dir():  # the Katib module in Go's module cache, which `go clean` removes
        pytest.fail(f"{katib} is missing: run `bash ci/install-suggestion-services.sh` first", pytrace=False)
    # The service images' PYTHONPATH (cmd/suggestion/<service>/v1beta1/Dockerfile).
    path = [katib, katib / "pkg/apis/manager/v1beta1/python", katib / "pkg/apis/manager/health/python"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(map(str, path)), PYTHONWARNINGS="ignore", **extra_env)
    return [str(python), str(ROOT / "ci" / "suggestion_validate.py"), service, *args], env


class PythonService:
    """One of Katib's Python suggestion services, imported once in its own venv (ci/suggestion_validate.py)."""

    def __init__(self, service: str, cwd: Path | None = None, **extra_env: str) -> None:
        command, env = service_command(service, **extra_env)
        self.service = service
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
        )

    def validate(self, requests: list[Any]) -> list[dict[str, Any]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(requests) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"{self.service} suggestion service process ended"
        verdicts: list[dict[str, Any]] = json.loads(line)
        return verdicts

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()


def katib_verdicts(experiments: list[dict[str, Any]], python: PythonService | None) -> list[dict[str, Any]]:
    if python is None:
        return katibcheck("goptuna", experiments)
    return python.validate([r["output"] for r in katibcheck("convert", experiments)])


@pytest.mark.parametrize("service", sorted(SERVICE_ALGORITHMS))
def test_the_generator_refuses_exactly_what_the_suggestion_service_refuses(
    service: str, base: tuple[dict[str, Any], ChartValues], tmp_path: Path
) -> None:
    template, values = base
    # enas imports TensorFlow (quietened) and keeps its controller's cache in its working directory.
    python = None if service == "goptuna" else PythonService(service, tmp_path, TF_CPP_MIN_LOG_LEVEL="3")

    @settings(max_examples=25, deadline=None)
    @given(st.lists(cases(service), min_size=BATCH, max_size=BATCH))
    def check(batch: list[dict[str, Any]]) -> None:
        verdicts = katib_verdicts([_katib_experiment(template, c) for c in batch], python)
        TRIED[service] = TRIED.get(service, 0) + len(batch)
        for case, verdict in zip(batch, verdicts, strict=True):
            ours = _generator_refuses(values, case, service)
            assert bool(ours) == ("error" in verdict), (service, case, ours, verdict)

    try:
        check()
    finally:
        if python is not None:
            python.close()
    print(f"\n{service}: {TRIED[service]} settings cases judged by Katib's service")


@pytest.mark.parametrize("service", NAS_SERVICES)
def test_katibs_own_nas_examples_imported_are_judged_as_their_service_judges_them(
    service: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Katib's own enas and darts examples (examples/v1beta1/nas in the Katib module), through
    `katib-nas import` and validate, against the service: its darts-gpu example has a skip_connection
    operation without parameters, which Katib's darts service refuses."""
    from generator.cli import main
    from generator.validate import validate_file

    examples = sorted((SERVICES / "katib" / "examples" / "v1beta1" / "nas").glob(f"{service}-*.yaml"))
    experiments = [yaml.safe_load(path.read_text()) for path in examples]
    python = PythonService(service, tmp_path, TF_CPP_MIN_LOG_LEVEL="3")
    try:
        verdicts = python.validate([r["output"] for r in katibcheck("convert", experiments)])
    finally:
        python.close()
    refused = {}
    for path, verdict in zip(examples, verdicts, strict=True):
        out = tmp_path / path.name
        assert main(["import", str(path), "-o", str(out)]) == 0, capsys.readouterr().err
        judged = ("experiment.nasConfig", "experiment.algorithm")
        ours = [str(p) for p in validate_file(out).errors if p.path.startswith(judged)]
        assert bool(ours) == ("error" in verdict), (path.name, ours, verdict)
        refused[path.stem] = bool(ours)
    expected = {"enas": {"enas-cpu": False, "enas-gpu": False}, "darts": {"darts-cpu": False, "darts-gpu": True}}
    assert refused == expected[service]


def test_the_local_runner_gives_tpe_the_meaning_of_katibs_hyperopt_service() -> None:
    from optuna.samplers._tpe.sampler import hyperopt_default_gamma

    from generator.local.samplers import hyperopt_gamma, sampler_for

    # hyperopt's split at its default gamma, as Optuna states it.
    assert all(hyperopt_gamma(0.25)(n) == hyperopt_default_gamma(n) for n in range(500))
    e = Experiment.model_validate(
        {
            "parallelTrialCount": 3,
            "algorithm": {
                "algorithmName": "tpe",
                "algorithmSettings": [
                    {"name": "gamma", "value": "0.5"},
                    {"name": "n_EI_candidates", "value": "7"},
                    {"name": "random_state", "value": "11"},
                ],
            },
        }
    )
    sampler: Any = sampler_for(e, "f.yaml", 0)
    # hyperopt samples at random for the first batch Katib asks for (n_startup_jobs=current_request_number).
    assert sampler._n_startup_trials == 3 and sampler._n_ei_candidates == 7
    assert sampler._gamma(100) == 5 and not sampler._multivariate


MEDIANSTOP_NAMES = ["min_trials_required", "start_step", "reduction_factor", "bogus"]


# medianstop's constructor loads a kubeconfig outside a pod (it talks to the API only when stopping
# trials, never to validate); this one points at a loopback port nothing listens on.
KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:1"}}],
    "users": [{"name": "none", "user": {}}],
    "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
    "current-context": "none",
}


@pytest.fixture(scope="module")
def medianstop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PythonService]:
    kubeconfig = tmp_path_factory.mktemp("medianstop") / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(KUBECONFIG))
    service = PythonService("medianstop", KUBECONFIG=str(kubeconfig))
    try:
        yield service
    finally:
        service.close()


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(
                st.sampled_from(MEDIANSTOP_NAMES),
                st.one_of(st.sampled_from(BOUNDARIES), st.sampled_from(VALUES), st.integers(-3, 40).map(str)),
            ),
            max_size=3,
        ),
        min_size=BATCH,
        max_size=BATCH,
    )
)
def test_the_generator_refuses_exactly_the_medianstop_settings_katibs_service_refuses(
    medianstop: PythonService, batch: list[list[tuple[str, str]]]
) -> None:
    """medianstop's own ValidateEarlyStoppingSettings (pkg/earlystopping/v1beta1/medianstop) in the
    venv of its requirements; the request is what Katib's suggestion controller sends for it."""
    from generator.checks_search import check_search

    base = yaml.safe_load((ROOT / "values" / "microk8s.yaml").read_text())
    settings_of = [[{"name": n, "value": v} for n, v in pairs] for pairs in batch]
    requests = [{"earlyStopping": {"algorithmName": "medianstop", "algorithmSettings": c}} for c in settings_of]
    verdicts = medianstop.validate(requests)
    TRIED["medianstop"] = TRIED.get("medianstop", 0) + len(batch)
    for pairs, verdict in zip(batch, verdicts, strict=True):
        data = copy.deepcopy(base)
        data["experiment"]["earlyStopping"] = {
            "enabled": True,
            "algorithmName": "medianstop",
            "algorithmSettings": [{"name": n, "value": v} for n, v in pairs],
        }
        report = validate_data(data, "v.yaml")
        assert report.values is not None, [str(p) for p in report.problems]
        ours = [m for p, m in check_search(report.values, "nas") if p.startswith("experiment.earlyStopping.algorithm")]
        assert bool(ours) == ("error" in verdict), (pairs, ours, verdict)
