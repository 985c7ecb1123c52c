"""Metrics from a trial's stdout, read the way Katib's StdOut collector reads them."""

from __future__ import annotations

import re

# Katib's default StdOut filter (pkg/metricscollector/v1beta1/common/const.go, DefaultFilter).
KATIB_FILTER = re.compile(r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)")


def parse_line(line: str) -> dict[str, float]:
    """Every name=value pair on one line; an empty dict for lines without one."""
    out = {}
    for name, value, *_ in KATIB_FILTER.findall(line):
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out


def reduce(values: list[float], strategy: str) -> float | None:
    """Katib's metric strategies: the max, min or latest reported value."""
    if not values:
        return None
    if strategy == "max":
        return max(values)
    if strategy == "min":
        return min(values)
    return values[-1]
