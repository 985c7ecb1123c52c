"""Katib's suggestion algorithms mapped to the Optuna samplers that implement the same method, with
the meaning and defaults of the Katib v0.19 service that serves each one on a cluster (katib-config:
random and tpe by hyperopt, grid and multivariate-tpe by Optuna, cmaes and sobol by goptuna,
bayesianoptimization by scikit-optimize). The README's table lists them."""

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
    QMCSampler,
    RandomSampler,
    TPESampler,
)
from optuna.trial import FrozenTrial, TrialState

from ..errors import LocalRunError
from ..models import Experiment
from .space import grid

LOCAL = ("random", "tpe", "multivariate-tpe", "grid", "cmaes", "sobol", "bayesianoptimization")


class _Grid(GridSampler):
    """GridSampler without its study.stop() once the grid is used up: that only works inside
    study.optimize, and the runner stops by maxTrialCount (the generator caps it at the grid size)."""

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        return None


def hyperopt_gamma(gamma: float) -> Callable[[int], int]:
    """hyperopt's split of n observed trials: the best ceil(gamma * sqrt(n)) of them, at most 25,
    form the good density (hyperopt.tpe.ap_split_trials; Optuna's hyperopt_default_gamma at 0.25)."""
    return lambda n: min(math.ceil(gamma * math.sqrt(n)), 25)


def sampler_for(experiment: Experiment, source: str, seed: int) -> BaseSampler:
    name = experiment.algorithm.algorithmName
    settings = {s.name: str(s.value) for s in experiment.algorithm.algorithmSettings}
    seed = int(settings.get("random_state", seed))
    if name == "random":
        return RandomSampler(seed=seed)
    if name == "tpe":
        # Katib's hyperopt service: hyperopt's TPE (independent per parameter, hyperopt's prior and
        # split), random for the first batch of parallelTrialCount trials (it passes
        # n_startup_jobs=current_request_number), then hyperopt's defaults unless set.
        with warnings.catch_warnings():  # prior_weight is deprecated in Optuna 4.9 but still applied
            warnings.simplefilter("ignore", FutureWarning)
            return TPESampler(
                seed=seed,
                n_startup_trials=experiment.parallelTrialCount,
                n_ei_candidates=int(settings.get("n_EI_candidates", 24)),
                gamma=hyperopt_gamma(float(settings.get("gamma", 0.25))),
                # Optuna's defaults are hyperopt's prior, magic clip and endpoints (its hyperopt_parameters).
                prior_weight=float(settings["prior_weight"]) if "prior_weight" in settings else None,
                constant_liar=False,
            )
    if name == "multivariate-tpe":
        # Katib's Optuna service: TPESampler(multivariate=True, constant_liar=True) with its settings.
        return TPESampler(
            seed=seed,
            n_startup_trials=int(settings.get("n_startup_trials", 10)),
            n_ei_candidates=int(settings.get("n_ei_candidates", 24)),
            multivariate=True,
            constant_liar=True,
        )
    if name == "grid":
        return _Grid(grid(experiment.parameters), seed=seed)
    if name == "cmaes":
        sigma = settings.get("sigma")
        restart = settings.get("restart_strategy", "none")
        # Katib's goptuna service: CMA-ES from the first trial (n_startup_trials 0 there, 1 is Optuna's
        # least), IPOP/BIPOP restarts (Optuna has IPOP only), categorical parameters drawn at random beside.
        with warnings.catch_warnings():  # restart_strategy is deprecated in Optuna but still works
            warnings.simplefilter("ignore", FutureWarning)
            return CmaEsSampler(
                seed=seed,
                sigma0=float(sigma) if sigma else None,
                restart_strategy="ipop" if restart in ("ipop", "bipop") else None,
                warn_independent_sampling=False,
            )
    if name == "sobol":
        with warnings.catch_warnings():  # experimental since Optuna 3.0, stable in use
            warnings.simplefilter("ignore", ExperimentalWarning)
            return QMCSampler(qmc_type="sobol", scramble=True, seed=seed)
    if name == "bayesianoptimization":
        # skopt's n_initial_points (default 10): random suggestions before the Gaussian process steers.
        return GPSampler(seed=seed, n_startup_trials=int(settings.get("n_initial_points", 10)))
    raise LocalRunError(
        f"{source}: experiment.algorithm.algorithmName: {name} has no local equivalent; run it on a cluster, "
        f"or use one of {', '.join(LOCAL)} locally"
    )
