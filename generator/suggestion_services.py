"""Algorithm settings as the Katib suggestion service that serves each algorithm judges them.

Katib's katib-config maps each algorithm to a suggestion service image; before the first trial the
Suggestion calls that service's ValidateAlgorithmSettings and fails the Experiment on a refusal.
Each service has its own names, types and ranges for the same algorithm (Katib v0.19.0 sources:
pkg/suggestion/v1beta1/<service>/service.py, pkg/suggestion/v1beta1/goptuna/converter.go), so the
check follows the service the cluster's profile maps the algorithm to. The Python services parse
values with Python's int() and float(), which this module calls too; goptuna parses with Go's
strconv.Atoi and ParseFloat, whose syntax is spelled out below. tests/test_suggestion_services.py
runs the services' own code on generated settings and checks that this module refuses exactly what
they refuse.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator

from .models import Experiment, Parameter
from .nas_config import check_nas_config
from .service_numbers import go_atoi, go_parse_float, py_float, py_int, range_length

# (value path, message, warning)
Finding = tuple[str, str, bool]

# Katib v0.19.0 standalone's katib-config (manifests/v1beta1/installs/katib-standalone).
KATIB_V019_SERVICES = {
    "random": "hyperopt",
    "tpe": "hyperopt",
    "grid": "optuna",
    "hyperband": "hyperband",
    "bayesianoptimization": "skopt",
    "cmaes": "goptuna",
    "sobol": "goptuna",
    "multivariate-tpe": "optuna",
    "enas": "enas",
    "darts": "darts",
    "pbt": "pbt",
}
# The algorithms each service implements.
SERVICE_ALGORITHMS = {
    "hyperopt": ("random", "tpe"),
    "optuna": ("tpe", "multivariate-tpe", "cmaes", "random", "grid"),
    "goptuna": ("random", "cmaes", "tpe", "sobol"),
    "skopt": ("bayesianoptimization",),
    "hyperband": ("hyperband",),
    "pbt": ("pbt",),
    "enas": ("enas",),
    "darts": ("darts",),
}
SUGGESTION_IMAGE = re.compile(r"(?:^|/)suggestion-([a-z]+)(?:[:@]|$)")

PATH = "experiment.algorithm.algorithmSettings"


def service_of_image(image: str) -> str:
    """The service a katib-config suggestion image runs (`.../suggestion-hyperopt:v0.19.0` -> hyperopt)."""
    match = SUGGESTION_IMAGE.search(image)
    return match.group(1) if match else image


# --- the services ---------------------------------------------------------------------------

Rule = Callable[[str], str | None]  # the value's problem, or None


def _int_at_least(low: int, parse: Callable[[str], int | None] = py_int) -> Rule:
    def rule(value: str) -> str | None:
        number = parse(value)
        if number is None:
            return "must be a whole number"
        return None if number >= low else f"must be {low} or more"

    return rule


def _float_rule(test: Callable[[float], bool], wanted: str, parse: Callable[[str], float | None] = py_float) -> Rule:
    def rule(value: str) -> str | None:
        number = parse(value)
        if number is None:
            return "must be a number"
        return None if test(number) else f"must be {wanted}"

    return rule


def _one_of(*choices: str) -> Rule:
    return lambda value: None if value in choices else f"must be one of {', '.join(choices)}"


def _none_or(rule: Rule) -> Rule:
    """The NAS services let some settings be the word None (their default then applies)."""
    return lambda value: None if value == "None" else rule(value)


def _enas_float(low: float, high: float | None) -> Rule:
    """enas' float range (low, high]: its test, kept as written, lets NaN through."""
    wanted = f"greater than {low:g}" + ("" if high is None else f" and at most {high:g}")
    return _float_rule(lambda x: not (x <= low or (high is not None and x > high)), wanted)


_SEED = _int_at_least(0)
_AT_LEAST_1 = _int_at_least(1)
_NOT_NEGATIVE = _float_rule(lambda x: x >= 0, "0 or more")
# name -> rule, per (service, algorithm). A name a service does not list is refused (the Python
# services) or let through (IGNORES_UNKNOWN).
SETTINGS: dict[tuple[str, str], dict[str, Rule]] = {
    ("hyperopt", "random"): {"random_state": _SEED},
    ("hyperopt", "tpe"): {
        "gamma": _float_rule(lambda x: 0 < x < 1, "between 0 and 1 (exclusive)"),
        "prior_weight": _float_rule(lambda x: x > 0, "greater than 0"),
        "n_EI_candidates": _int_at_least(1),
        "random_state": _SEED,
    },
    **{
        ("optuna", algorithm): {"n_startup_trials": _SEED, "n_ei_candidates": _SEED, "random_state": _SEED}
        for algorithm in ("tpe", "multivariate-tpe")
    },
    ("optuna", "cmaes"): {
        "restart_strategy": _one_of("ipop", "None", "none"),
        "sigma": _float_rule(lambda x: x >= 0, "0 or more"),
        "random_state": _SEED,
    },
    ("optuna", "random"): {"random_state": _SEED},
    ("optuna", "grid"): {"random_state": _SEED},
    ("goptuna", "cmaes"): {
        "random_state": _int_at_least(-(2**63), go_atoi),
        "sigma": _float_rule(lambda x: True, "a number", go_parse_float),
        "restart_strategy": _one_of("ipop", "bipop", "none"),
    },
    ("goptuna", "tpe"): {
        name: _int_at_least(-(2**63), go_atoi) for name in ("random_state", "n_startup_trials", "n_ei_candidates")
    },
    ("goptuna", "random"): {"random_state": _int_at_least(-(2**63), go_atoi)},
    ("goptuna", "sobol"): {},
    ("skopt", "bayesianoptimization"): {
        "base_estimator": _one_of("GP", "RF", "ET", "GBRT"),
        "n_initial_points": _SEED,
        "acq_func": _one_of("gp_hedge", "LCB", "EI", "PI", "EIps", "PIps"),
        "acq_optimizer": _one_of("auto", "sampling", "lbfgs"),
        "random_state": _SEED,
    },
}
SETTINGS.update(
    {
        # pkg/suggestion/v1beta1/nas/enas/AlgorithmSettings.py and its service's ValidateAlgorithmSettings.
        ("enas", "enas"): {
            "controller_hidden_size": _AT_LEAST_1,
            "controller_temperature": _none_or(_enas_float(0, None)),
            "controller_tanh_const": _none_or(_enas_float(0, None)),
            "controller_entropy_weight": _none_or(_enas_float(0, None)),
            "controller_baseline_decay": _enas_float(0, 1),
            "controller_learning_rate": _enas_float(0, 1),
            "controller_skip_target": _enas_float(0, 1),
            "controller_skip_weight": _none_or(_enas_float(0, None)),
            "controller_train_steps": _AT_LEAST_1,
            "controller_log_every_steps": _AT_LEAST_1,
        },
        # pkg/suggestion/v1beta1/nas/darts/service.py validate_algorithm_settings.
        ("darts", "darts"): {
            "num_epochs": _AT_LEAST_1,
            **dict.fromkeys(
                ("w_lr", "w_lr_min", "alpha_lr", "w_weight_decay", "alpha_weight_decay", "w_momentum", "w_grad_clip"),
                _NOT_NEGATIVE,
            ),
            "batch_size": _none_or(_AT_LEAST_1),
            "num_workers": _SEED,
            **dict.fromkeys(("init_channels", "print_step", "num_nodes", "stem_multiplier"), _AT_LEAST_1),
        },
    }
)
# Services that let names they do not know through: goptuna reads only its own; darts hands every
# setting to the trial (its algorithm-settings trial parameter) and checks only its own.
IGNORES_UNKNOWN = {
    "goptuna": "ignores {name!r} for {algorithm}; it reads only {known}",
    "darts": "does not know {name!r} and hands it to the trial unchecked; it knows {known}",
}


def service_for(algorithm: str, services: dict[str, str] | None) -> str | None:
    """The suggestion service that serves the algorithm: the profile's suggestionServices (a cluster's own
    katib-config), or Katib v0.19 standalone's mapping when the profile names none."""
    return (KATIB_V019_SERVICES if services is None else services).get(algorithm)


# A resumed search with resumePolicy FromVolume: Katib deletes the suggestion Deployment when the
# Experiment finishes and, once maxTrialCount is raised, starts a new service process whose first
# GetSuggestions carries every trial so far; a failed request is sent again, unchanged, after a
# longer wait each time (only a failed settings validation fails the Suggestion). What the new
# process of each service that cannot take those trials does, for every algorithm it serves
# (tests/test_resume_services.py runs each service so). The others take the trials as their own;
# hyperopt's tpe answers one trial short on the first request and in full on the second.
RESUME_FAILURES = {
    "optuna": "refuses each trial it did not ask for, one request at a time, then searches as if none had run",
    "goptuna": "refuses the trials it did not sample on every request, so no trial ever starts",
    "pbt": "refuses the trials of a population it did not make on every request, so no trial ever starts",
}


# Services whose new process, seeded again by random_state, draws the points of the search's first
# trials again: hyperopt's random always; skopt while fewer than n_initial_points (default 10)
# trials have run, since it asks at random until then. None: no limit.
RESUME_REPEATS = {("hyperopt", "random"): None, ("skopt", "bayesianoptimization"): "n_initial_points"}


# Katib's webhook lets a running Experiment change only its trial counts, so the fix above needs a new
# Experiment where the release already runs this one (the upgrade's frozen-field check says the same).
FROZEN_POLICY = "for an Experiment already installed, whose resumePolicy Katib keeps, also set a new experiment.name"


def check_resume(e: Experiment, services: dict[str, str] | None, explicit: bool) -> Iterator[Finding]:
    """resumePolicy FromVolume where the cluster's service for the algorithm cannot resume from it,
    or (a warning) repeats trials on resuming; `explicit`: the values file sets resumePolicy (else it is
    the chart's default)."""
    algorithm = e.algorithm.algorithmName
    service = service_for(algorithm, services)
    if e.resumePolicy != "FromVolume" or service is None:
        return
    chosen = "" if explicit else " (the chart's default)"
    if service in RESUME_FAILURES:
        yield (
            "experiment.resumePolicy",
            f"FromVolume{chosen}: Katib's {service} service keeps its state in memory: a resumed search fails (a "
            f"new service process {RESUME_FAILURES[service]}); use LongRunning, which keeps the service running, "
            f"or Never ({FROZEN_POLICY})",
            False,
        )
        return
    settings = {s.name: str(s.value) for s in e.algorithm.algorithmSettings}
    if (service, algorithm) not in RESUME_REPEATS or "random_state" not in settings:
        return
    limit, until = RESUME_REPEATS[service, algorithm], ""
    if limit is not None:
        initial = py_int(settings.get(limit, "10"))
        if initial is None or e.maxTrialCount >= initial:  # a bad value is refused by the settings check
            return
        until = f" while fewer than {limit}={initial} trials have run"
    yield (
        "experiment.resumePolicy",
        f"FromVolume{chosen} with random_state: a new process of Katib's {service} service draws the search's first "
        f"points again{until}, so a resumed search repeats trials already run; use LongRunning or leave "
        "random_state out",
        True,
    )


# Services that answer only the first GetSuggestions of their process: Katib's darts service reads the
# nasConfig's num_layers on its first request alone, so a later one fails (UnboundLocalError) and Katib
# retries it forever. A search then never gets past its first parallelTrialCount trials, and
# LongRunning's resume asks the kept process again; a new process (FromVolume) answers
# (tests/test_resume_services.py runs the service so).
FIRST_REQUEST_ONLY = {"darts": "num_layers"}


def check_one_request(e: Experiment, services: dict[str, str] | None) -> Iterator[Finding]:
    """Searches that need a second request of a service that answers only its first."""
    algorithm = e.algorithm.algorithmName
    service = service_for(algorithm, services)
    if service not in FIRST_REQUEST_ONLY:
        return
    why = (
        f"Katib's {service} service answers only the first request of its process (it reads "
        f"{FIRST_REQUEST_ONLY[service]} then and fails every later request)"
    )
    if e.maxTrialCount > e.parallelTrialCount:
        yield (
            "experiment.maxTrialCount",
            f"{e.maxTrialCount} trials, {e.parallelTrialCount} at once, with {algorithm}: {why}, so no trial past the "
            f"first {e.parallelTrialCount} ever starts and the Experiment never finishes; set maxTrialCount to at "
            "most parallelTrialCount (Katib's darts examples run 1 trial)",
            False,
        )
    if e.resumePolicy == "LongRunning":
        yield (
            "experiment.resumePolicy",
            f"LongRunning with {algorithm}: a resumed search asks the kept service again, and {why}; use FromVolume, "
            "whose new service process answers, or Never",
            False,
        )


# Services that answer a later request with fewer trials than it asks for: Katib's hyperband sizes its
# first rung by the first request, then answers a request for k trials with ceil(ceil(k*eta^-i)/eta),
# fewer than k for any k above 1. Katib's suggestion controller refuses an answer of another size and
# asks again, for at least as many trials each time, so the Suggestion never moves again. Its experiment
# controller asks for as many trials as have finished since it last reconciled: two trials finishing
# together stall the search (tests/test_resume_services.py runs the service so).
SHORT_LATER_ANSWERS = {"hyperband"}


def check_later_requests(e: Experiment, services: dict[str, str] | None) -> Iterator[Finding]:
    """A warning for searches that ask a service that answers later requests short for more trials."""
    algorithm = e.algorithm.algorithmName
    service = service_for(algorithm, services)
    if service not in SHORT_LATER_ANSWERS or e.maxTrialCount <= e.parallelTrialCount:
        return
    yield (
        "experiment.maxTrialCount",
        f"{e.maxTrialCount} trials, {e.parallelTrialCount} at once, with {algorithm}: after its first "
        f"{e.parallelTrialCount} trials Katib's {service} service answers a request for more than one trial with "
        "fewer, which Katib refuses and asks again forever, so the search stalls once two trials finish "
        "together; set maxTrialCount to parallelTrialCount (one rung, as Katib's hyperband example does) or "
        "choose another algorithm",
        True,
    )


def check_algorithm_settings(e: Experiment, services: dict[str, str] | None = None) -> Iterator[Finding]:
    """Findings for the Experiment's algorithm settings as the cluster's suggestion service judges them."""
    services = KATIB_V019_SERVICES if services is None else services
    algorithm = e.algorithm.algorithmName
    service = services.get(algorithm)
    if service is None:
        yield (
            "experiment.algorithm.algorithmName",
            f"the cluster's katib-config has no suggestion service for {algorithm}, so Katib's webhook refuses "
            f"the Experiment; use one of {', '.join(sorted(services))} or add {algorithm} to katib-config",
            False,
        )
        return
    if service not in SERVICE_ALGORITHMS:
        yield (PATH, f"{algorithm} is served by {service!r}, whose settings katib-nas cannot check", True)
        return
    if algorithm not in SERVICE_ALGORITHMS[service]:
        yield (
            "experiment.algorithm.algorithmName",
            f"the cluster's katib-config serves {algorithm} with Katib's {service} service, which does not implement "
            f"it (only {', '.join(SERVICE_ALGORITHMS[service])}); use one of those or fix katib-config",
            False,
        )
        return
    settings = [(s.name, str(s.value)) for s in e.algorithm.algorithmSettings]
    if service == "hyperband":
        yield from _hyperband(e, dict(settings))
    elif service == "pbt":
        yield from _pbt(dict(settings))
    elif service in ("enas", "darts"):
        # Without a nasConfig, checks_search refuses enas and darts already.
        if e.nasConfig is not None:
            nas = check_nas_config(e.nasConfig.model_dump(), service)
            yield from ((path, message, False) for path, message in nas)
        yield from _named_settings(service, algorithm, settings)
    else:
        yield from _named_settings(service, algorithm, settings)
    if service == "goptuna":
        yield from _goptuna_space(e)
    if algorithm == "cmaes" and sum(p.parameterType in ("int", "double") for p in e.parameters) < 2:
        yield (
            "experiment.parameters",
            f"Katib's {service} service runs cmaes only on two or more int or double parameters; add one or use tpe",
            False,
        )
    if service == "optuna" and algorithm == "grid":
        yield from _optuna_grid(e)


def _named_settings(service: str, algorithm: str, settings: list[tuple[str, str]]) -> Iterator[Finding]:
    rules = SETTINGS[(service, algorithm)]
    known = ", ".join(rules) or "none"
    for i, (name, value) in enumerate(settings):
        rule = rules.get(name)
        if rule is None:
            if service in IGNORES_UNKNOWN:
                said = IGNORES_UNKNOWN[service].format(name=name, algorithm=algorithm, known=known)
                yield (f"{PATH}[{i}].name", f"Katib's {service} service {said}", True)
            else:
                yield (
                    f"{PATH}[{i}].name",
                    f"Katib's {service} service (which serves {algorithm}) has no setting {name!r} and fails the "
                    f"Experiment; use {known}",
                    False,
                )
            continue
        problem = rule(value)
        if problem is not None:
            yield (
                f"{PATH}[{i}].value",
                f"{name} {problem} for Katib's {service} service, not {value!r}",
                False,
            )


def _hyperband(e: Experiment, settings: dict[str, str]) -> Iterator[Finding]:
    """HyperbandService.ValidateAlgorithmSettings: r_l a float >= 0, eta int(float()) (3 when <= 0),
    parallelTrialCount >= eta**floor(log(r_l)/log(eta)), resource_name a parameter."""
    if "r_l" not in settings or "resource_name" not in settings:
        yield (
            PATH,
            "hyperband needs settings r_l and resource_name (the parameter that carries the budget, such as epochs)",
            False,
        )
        return
    r_l = py_float(settings["r_l"])
    if r_l is None or r_l < 0 or math.isnan(r_l):
        yield (PATH, f"hyperband r_l must be a positive number, not {settings['r_l']!r}", False)
        return
    eta = 3
    if "eta" in settings:
        raw = py_float(settings["eta"])
        if raw is None or not math.isfinite(raw):
            yield (PATH, f"hyperband eta must be a whole number, not {settings['eta']!r}", False)
            return
        eta = int(raw) if int(raw) > 0 else 3
    if r_l == 0 or eta == 1 or math.isinf(r_l):
        yield (PATH, f"hyperband r_l={settings['r_l']} with eta={eta} has no brackets; use r_l > 1 and eta >= 2", False)
        return
    needed = math.ceil(eta ** int(math.log(r_l) / math.log(eta)))
    if e.parallelTrialCount < needed:
        yield (
            "experiment.parallelTrialCount",
            f"hyperband with r_l={settings['r_l']} and eta={eta} needs parallelTrialCount >= {needed}; raise it or "
            "lower r_l",
            False,
        )
    if settings["resource_name"] not in {p.name for p in e.parameters}:
        yield (
            PATH,
            f"hyperband resource_name {settings['resource_name']!r} is not a parameter; add it to "
            "experiment.parameters",
            False,
        )


def _pbt(settings: dict[str, str]) -> Iterator[Finding]:
    """PbtService.ValidateAlgorithmSettings."""
    missing = [k for k in ("suggestion_trial_dir", "n_population", "truncation_threshold") if k not in settings]
    if missing:
        yield (PATH, f"pbt needs settings {', '.join(missing)}", False)
        return
    population = py_int(settings["n_population"])
    if population is None or population < 5:
        yield (PATH, f"pbt n_population must be a whole number of 5 or more, not {settings['n_population']!r}", False)
        return
    threshold = py_float(settings["truncation_threshold"])
    if threshold is None or not 0 <= threshold <= 1:
        yield (
            PATH,
            f"pbt truncation_threshold must be between 0 and 1, not {settings['truncation_threshold']!r}",
            False,
        )
        return
    if "resample_probability" in settings:
        # v0.19.0 compares the setting's text with numbers, so the service fails on any value.
        yield (
            PATH,
            "Katib v0.19's pbt service fails on any resample_probability (it compares the text with numbers); "
            "leave it out to perturb values by 0.8 or 1.2",
            False,
        )


def _goptuna_space(e: Experiment) -> Iterator[Finding]:
    """goptuna's toGoptunaSearchSpace parses int bounds with Atoi and double bounds with ParseFloat."""
    for i, p in enumerate(e.parameters):
        fs = p.feasibleSpace
        parse = go_atoi if p.parameterType == "int" else go_parse_float if p.parameterType == "double" else None
        if parse is None:
            continue
        for key in ("min", "max", "step"):
            raw = getattr(fs, key)
            if raw is None or (key == "step" and str(raw) == ""):
                continue
            if parse(str(raw)) is None:
                kind = "a whole number" if parse is go_atoi else "a number"
                yield (
                    f"experiment.parameters[{i}].feasibleSpace.{key}",
                    f"Katib's goptuna service needs {kind} here, not {raw!r}",
                    False,
                )


def _np_arange_length(low: float, high: float, step: float) -> int | None:
    """len(np.arange(low, high + step, step)) after Katib drops a last value above high; None when
    numpy or the service would raise (an empty range, a zero or infinite step)."""
    if step == 0 or not all(math.isfinite(x) for x in (low, high, step)):
        return None
    span = (high + step - low) / step
    if not math.isfinite(span):  # numpy cannot make an array that long
        return None
    n = math.ceil(span)
    if n <= 0:
        return None
    return n - 1 if low + (n - 1) * step > high else n


def grid_points(parameters: list[Parameter]) -> int | None:
    """The number of grid points Katib's optuna service counts (HyperParameterSearchSpace.
    convert_to_combinations), or None when it fails on the search space."""
    sizes: list[int] = []
    for p in parameters:
        fs = p.feasibleSpace
        if p.parameterType in ("categorical", "discrete"):
            sizes.append(len(fs.list or []))
            continue
        step_raw = "" if fs.step is None else str(fs.step)
        if p.parameterType == "int":
            low, high, step = py_int(str(fs.min)), py_int(str(fs.max)), py_int(step_raw or "1")
            if low is None or high is None or step is None or step == 0:
                return None
            sizes.append(range_length(low, high + 1, step))
        else:
            if not step_raw:
                return None
            lo, hi, st = py_float(str(fs.min)), py_float(str(fs.max)), py_float(step_raw)
            if lo is None or hi is None or st is None:
                return None
            n = _np_arange_length(lo, hi, st)
            if n is None:
                return None
            sizes.append(n)
    return math.prod(sizes)


def _optuna_grid(e: Experiment) -> Iterator[Finding]:
    for i, p in enumerate(e.parameters):
        if p.parameterType == "double" and (p.feasibleSpace.step is None or str(p.feasibleSpace.step) == ""):
            yield (
                f"experiment.parameters[{i}].feasibleSpace.step",
                "grid needs a step for double parameters; add feasibleSpace.step",
                False,
            )
            return
    points = grid_points(e.parameters)
    if points is None:
        yield (
            "experiment.parameters",
            "Katib's grid service cannot enumerate this search space; check the steps",
            False,
        )
    elif e.maxTrialCount > points:
        yield (
            "experiment.maxTrialCount",
            f"{e.maxTrialCount} is more than the {points} points of the grid; Katib's grid service fails, set "
            f"maxTrialCount to {points} or less",
            False,
        )
