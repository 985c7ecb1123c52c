"""Katib's search space as Optuna distributions, and sampled values as the strings Katib would pass."""

from __future__ import annotations

import math
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from ..models import Parameter
from ..service_numbers import range_length


def distribution(p: Parameter) -> BaseDistribution:
    fs = p.feasibleSpace
    log = fs.distribution in ("logUniform", "logNormal")
    if p.parameterType in ("categorical", "discrete"):
        return CategoricalDistribution([str(v) for v in fs.list or []])
    low, high = float(fs.min), float(fs.max)  # type: ignore[arg-type]  # the checks made them numbers
    step = float(fs.step) if fs.step not in (None, "") else None
    if p.parameterType == "int":
        return IntDistribution(int(low), int(high), log=log, step=1 if log or step is None else int(step))
    return FloatDistribution(low, high, log=log, step=None if log else step)


def search_space(parameters: list[Parameter]) -> dict[str, BaseDistribution]:
    return {p.name: distribution(p) for p in parameters}


# Points of a grid the local runner lists (Optuna's GridSampler holds every one in memory).
GRID_LIMIT = 100_000


def _values(d: BaseDistribution) -> range | list[Any]:
    """The values of one parameter of the grid, as a range where they are numbers, so that counting
    them costs nothing."""
    if isinstance(d, CategoricalDistribution):
        return list(d.choices)
    if isinstance(d, IntDistribution):
        return range(d.low, d.high + 1, d.step)
    assert isinstance(d, FloatDistribution) and d.step is not None
    return range(round((d.high - d.low) / d.step) + 1)


def grid_size(parameters: list[Parameter]) -> int:
    """The number of points of the grid (validate made the bounds and steps finite numbers)."""
    sizes = []
    for p in parameters:
        values = _values(distribution(p))
        sizes.append(range_length(values.start, values.stop, values.step) if isinstance(values, range) else len(values))
    return math.prod(sizes)


def grid(parameters: list[Parameter]) -> dict[str, list[Any]]:
    """Every value of each parameter, as Katib's grid enumerates it (double needs a step)."""
    out: dict[str, list[Any]] = {}
    for p in parameters:
        d = distribution(p)
        values = _values(d)
        if isinstance(d, FloatDistribution):
            assert d.step is not None
            out[p.name] = [round(d.low + i * d.step, 12) for i in values]
        else:
            out[p.name] = list(values)
    return out


def as_flag(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)
