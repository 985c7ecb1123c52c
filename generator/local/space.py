"""Katib's search space as Optuna distributions, and sampled values as the strings Katib would pass."""

from __future__ import annotations

from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from ..models import Parameter


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


def grid(parameters: list[Parameter]) -> dict[str, list[Any]]:
    """Every value of each parameter, as Katib's grid enumerates it (double needs a step)."""
    out: dict[str, list[Any]] = {}
    for p in parameters:
        d = distribution(p)
        if isinstance(d, CategoricalDistribution):
            out[p.name] = list(d.choices)
        elif isinstance(d, IntDistribution):
            out[p.name] = list(range(d.low, d.high + 1, d.step))
        else:
            assert isinstance(d, FloatDistribution) and d.step is not None
            count = round((d.high - d.low) / d.step)
            out[p.name] = [round(d.low + i * d.step, 12) for i in range(count + 1)]
    return out


def as_flag(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)
