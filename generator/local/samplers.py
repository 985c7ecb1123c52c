"""Katib's suggestion algorithms mapped to the Optuna samplers that implement the same method."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

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


def sampler_for(experiment: Experiment, source: str, seed: int) -> BaseSampler:
    name = experiment.algorithm.algorithmName
    settings = {s.name: str(s.value) for s in experiment.algorithm.algorithmSettings}
    seed = int(settings.get("random_state", seed))
    if name == "random":
        return RandomSampler(seed=seed)
    if name in ("tpe", "multivariate-tpe"):
        startup = int(settings.get("n_startup_trials", 10))
        return TPESampler(seed=seed, n_startup_trials=startup, multivariate=name == "multivariate-tpe")
    if name == "grid":
        return _Grid(grid(experiment.parameters), seed=seed)
    if name == "cmaes":
        sigma = settings.get("sigma")
        # Categorical parameters are drawn at random beside CMA-ES, as Katib's goptuna-based service does.
        return CmaEsSampler(seed=seed, sigma0=float(sigma) if sigma else None, warn_independent_sampling=False)
    if name == "sobol":
        with warnings.catch_warnings():  # experimental since Optuna 3.0, stable in use
            warnings.simplefilter("ignore", ExperimentalWarning)
            return QMCSampler(qmc_type="sobol", scramble=True, seed=seed)
    if name == "bayesianoptimization":
        return GPSampler(seed=seed)
    raise LocalRunError(
        f"{source}: experiment.algorithm.algorithmName: {name} has no local equivalent; run it on a cluster, "
        f"or use one of {', '.join(LOCAL)} locally"
    )
