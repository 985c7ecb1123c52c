"""Katib's suggestion algorithms mapped to the Optuna samplers that implement the same method, with
the meaning and defaults of the Katib service that serves each one on the profile's cluster: its
suggestionServices, else Katib v0.19 standalone's katib-config (random and tpe by hyperopt, grid and
multivariate-tpe by Optuna, cmaes and sobol by goptuna, bayesianoptimization by scikit-optimize).
The same name can mean another method under another service (tpe: hyperopt's, Optuna's or
goptuna's). The README's table lists them."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

from optuna import Study
from optuna.exceptions import ExperimentalWarning
from optuna.samplers import (
    BaseSampler,
    CmaEsSampler,
    GPSampler,
    GridSampler,
    NSGAIISampler,
    QMCSampler,
    RandomSampler,
    TPESampler,
)
from optuna.trial import FrozenTrial, TrialState

from ..errors import LocalRunError
from ..models import Experiment
from ..service_numbers import go_parse_float, py_float, py_int
from ..suggestion_services import service_for
from . import MULTI_OBJECTIVE
from .space import GRID_LIMIT, grid, grid_size

# Optuna's samplers seed numpy's RandomState, which takes 0 to 2**32 - 1.
SEEDS = 2**32
PATH = "experiment.algorithm.algorithmSettings"


class _Refused(Exception):
    """A value the Katib service takes but its local stand-in cannot: `message` starts at the value path."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Grid(GridSampler):
    """GridSampler without its study.stop() once the grid is used up: that only works inside
    study.optimize, and the runner stops by maxTrialCount (the generator caps it at the grid size)."""

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        return None


def hyperopt_gamma(gamma: float) -> Callable[[int], int]:
    """hyperopt's split of n observed trials: the best ceil(gamma * sqrt(n)) of them, at most 25,
    form the good density (hyperopt.tpe.ap_split_trials; Optuna's hyperopt_default_gamma at 0.25)."""
    return lambda n: min(math.ceil(gamma * math.sqrt(n)), 25)


Settings = dict[str, str]


def _random(e: Experiment, settings: Settings, seed: int) -> BaseSampler:
    return RandomSampler(seed=seed)


def _hyperopt_tpe(e: Experiment, settings: Settings, seed: int) -> BaseSampler:
    # Katib's hyperopt service: hyperopt's TPE (independent per parameter, hyperopt's prior and
    # split), random for the first batch of parallelTrialCount trials (it passes
    # n_startup_jobs=current_request_number), then hyperopt's defaults unless set.
    with warnings.catch_warnings():  # prior_weight is deprecated in Optuna 4.9 but still applied
        warnings.simplefilter("ignore", FutureWarning)
        return TPESampler(
            seed=seed,
            n_startup_trials=e.parallelTrialCount,
            n_ei_candidates=int(settings.get("n_EI_candidates", 24)),
            gamma=hyperopt_gamma(float(settings.get("gamma", 0.25))),
            # Optuna's defaults are hyperopt's prior, magic clip and endpoints (its hyperopt_parameters).
            prior_weight=float(settings["prior_weight"]) if "prior_weight" in settings else None,
            constant_liar=False,
        )


def _optuna_tpe(multivariate: bool) -> Callable[[Experiment, Settings, int], BaseSampler]:
    # Katib's Optuna service: TPESampler(constant_liar=True) with its settings (multivariate-tpe adds
    # multivariate=True); Optuna's defaults otherwise.
    def make(e: Experiment, settings: Settings, seed: int) -> BaseSampler:
        return TPESampler(
            seed=seed,
            n_startup_trials=int(settings.get("n_startup_trials", 10)),
            n_ei_candidates=int(settings.get("n_ei_candidates", 24)),
            multivariate=multivariate,
            constant_liar=True,
        )

    return make


def _goptuna_tpe(e: Experiment, settings: Settings, seed: int) -> BaseSampler:
    # goptuna's TPE, a port of Optuna's: independent per parameter, no constant liar, 10 startup trials
    # and 24 candidates unless set (goptuna takes any whole number; Optuna needs one candidate at least).
    return TPESampler(
        seed=seed,
        n_startup_trials=int(settings.get("n_startup_trials", 10)),
        n_ei_candidates=max(1, int(settings.get("n_ei_candidates", 24))),
        constant_liar=False,
    )


def _grid(e: Experiment, settings: Settings, seed: int) -> BaseSampler:
    # Optuna's GridSampler lists every point of the grid up front.
    points = grid_size(e.parameters)
    if points > GRID_LIMIT:
        raise _Refused(
            f"experiment.parameters: the grid has {points} points and the local runner lists each one, at most "
            f"{GRID_LIMIT}; narrow the ranges or widen the steps"
        )
    return _Grid(grid(e.parameters), seed=seed)


def _cmaes(parse: Callable[[str], float | None]) -> Callable[[Experiment, Settings, int], BaseSampler]:
    # CMA-ES from the first trial (goptuna's n_startup_trials is 0 there, Optuna's least is 1), with the
    # service's sigma, read as the service reads it (Python's float(), Go's ParseFloat); categorical
    # parameters drawn at random beside it, as both services do. No restarts: Optuna 5's CmaEsSampler
    # ignores restart_strategy (moved to OptunaHub, not installed).
    def make(e: Experiment, settings: Settings, seed: int) -> BaseSampler:
        text = settings.get("sigma")
        sigma = parse(text) if text else None
        if text and (sigma is None or math.isnan(sigma)):
            # Validate refused any other text; goptuna takes NaN, which Optuna's CMA-ES fails on.
            raise _Refused(f"{PATH}: sigma {text!r} is no number the local CMA-ES can start from; give a positive one")
        with warnings.catch_warnings():  # sigma0 is deprecated in Optuna 4.9 but still applied
            warnings.simplefilter("ignore", FutureWarning)
            return CmaEsSampler(seed=seed, sigma0=sigma, warn_independent_sampling=False)

    return make


def _sobol(e: Experiment, settings: Settings, seed: int) -> BaseSampler:
    with warnings.catch_warnings():  # experimental since Optuna 3.0, stable in use
        warnings.simplefilter("ignore", ExperimentalWarning)
        return QMCSampler(qmc_type="sobol", scramble=True, seed=seed)


def _skopt_gp(e: Experiment, settings: Settings, seed: int) -> BaseSampler:
    # skopt's n_initial_points (default 10): random suggestions before the Gaussian process steers.
    return GPSampler(seed=seed, n_startup_trials=int(settings.get("n_initial_points", 10)))


# (Katib service, algorithm) -> the Optuna sampler with that service's meaning and defaults.
STAND_INS: dict[tuple[str, str], Callable[[Experiment, Settings, int], BaseSampler]] = {
    ("hyperopt", "random"): _random,
    ("hyperopt", "tpe"): _hyperopt_tpe,
    ("optuna", "random"): _random,
    ("optuna", "tpe"): _optuna_tpe(multivariate=False),
    ("optuna", "multivariate-tpe"): _optuna_tpe(multivariate=True),
    ("optuna", "grid"): _grid,
    ("optuna", "cmaes"): _cmaes(py_float),
    ("goptuna", "random"): _random,
    ("goptuna", "tpe"): _goptuna_tpe,
    ("goptuna", "cmaes"): _cmaes(go_parse_float),
    ("goptuna", "sobol"): _sobol,
    ("skopt", "bayesianoptimization"): _skopt_gp,
}
LOCAL = tuple(dict.fromkeys(algorithm for _, algorithm in STAND_INS))


def sampler_for(experiment: Experiment, source: str, seed: int, services: dict[str, str] | None = None) -> BaseSampler:
    """The stand-in for the algorithm as the Katib service that `services` (the profile's
    suggestionServices; Katib v0.19 standalone's katib-config when None) maps it to serves it."""
    name = experiment.algorithm.algorithmName
    service = service_for(name, services) or ""
    settings = {s.name: str(s.value) for s in experiment.algorithm.algorithmSettings}
    make = STAND_INS.get((service, name))
    if make is None and name in LOCAL:
        served = [s for s, a in STAND_INS if a == name]
        raise LocalRunError(
            f"{source}: experiment.algorithm.algorithmName: {name} as the profile's cluster serves it (Katib's "
            f"{service or 'no'} service) has no local equivalent; the local runner runs {name} as "
            f"{', '.join(served)} serve it"
        )
    if make is None:
        raise LocalRunError(
            f"{source}: experiment.algorithm.algorithmName: {name} has no local equivalent; run it on a cluster, "
            f"or use one of {', '.join(LOCAL)} locally"
        )
    try:
        return make(experiment, settings, random_state(settings, seed, source))
    except _Refused as exc:
        raise LocalRunError(f"{source}: {exc.message}") from None


def random_state(settings: dict[str, str], default: int, source: str) -> int:
    """The sampler's seed: the algorithm's random_state setting. A setting the Katib service ignores
    (goptuna's sobol reads none) is not checked as a number, so it can be any text: one line, not a traceback.
    The services take seeds Optuna's samplers cannot (hyperopt any seed from 0, goptuna any int64), so the
    seed is taken modulo 2**32: the same setting still gives the same local search."""
    value = settings.get("random_state")
    if value is None:
        return default
    seed = py_int(value)
    if seed is None:
        raise LocalRunError(
            f"{source}: {PATH}: random_state {value!r} is not a whole number; the local runner seeds its sampler "
            "with it"
        )
    return seed % SEEDS


def multi_objective_sampler(name: str, experiment: Experiment, source: str, seed: int) -> BaseSampler:
    """NSGA-II, or TPE on both objectives (Optuna's MOTPE), for the objective and the serving latency.
    Both start from a third of maxTrialCount random trials (4 to 50): NSGA-II's default population of
    50 would leave a 12-trial search random, with no generation bred from the Pareto front."""
    settings = {s.name: str(s.value) for s in experiment.algorithm.algorithmSettings}
    seed = random_state(settings, seed, source)
    first = min(50, max(4, experiment.maxTrialCount // 3))
    if name == "nsga2":
        return NSGAIISampler(seed=seed, population_size=first)
    if name == "tpe":
        return TPESampler(seed=seed, n_startup_trials=first, multivariate=True, constant_liar=True)
    raise LocalRunError(f"{source}: --multi-objective {name}: use one of {', '.join(MULTI_OBJECTIVE)}")
