"""Numbers as Katib's suggestion services parse setting values and bounds.

The Python services call Python's int() and float(); goptuna calls Go's strconv.Atoi and
ParseFloat, whose syntax is spelled out here. Each parser returns None where the service's own
parser raises, so a check can refuse exactly the values the service fails on.
"""

from __future__ import annotations

import math
import re


def py_int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def py_float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


_GO_INT = re.compile(r"[+-]?[0-9]+")
_GO_DEC_FLOAT = re.compile(r"[+-]?(?:[0-9_]+\.?[0-9_]*|\.[0-9_]+)(?:[eE][+-]?[0-9_]+)?")
_GO_HEX_FLOAT = re.compile(r"[+-]?0[xX][0-9a-fA-F_]*\.?[0-9a-fA-F_]*[pP][+-]?[0-9_]+")
_GO_INF = re.compile(r"[+-]?(?:inf|infinity)", re.IGNORECASE)


def go_atoi(value: str) -> int | None:
    """strconv.Atoi on 64-bit: ASCII digits with an optional sign, within int64."""
    if not _GO_INT.fullmatch(value) or len(value.lstrip("+-").lstrip("0")) > 19:  # past int64, and int()'s limit
        return None
    number = int(value)
    return number if -(2**63) <= number < 2**63 else None


def _go_underscores_ok(value: str) -> bool:
    """Go's number syntax: an underscore only between two digits, or between a base prefix and a digit."""
    body = value.lstrip("+-")
    hexadecimal = body[:2].lower() == "0x"
    previous = "digit" if hexadecimal else "start"
    for c in body[2:] if hexadecimal else body:
        if c.isascii() and (c.isdigit() or (hexadecimal and c.lower() in "abcdef")):
            previous = "digit"
        elif c == "_":
            if previous != "digit":
                return False
            previous = "_"
        elif previous == "_":
            return False
        else:
            previous = "other"
    return previous != "_"


def go_parse_float(value: str) -> float | None:
    """strconv.ParseFloat(s, 64): decimal or hexadecimal (p exponent) syntax with Go's digit
    separators, signed Inf/Infinity, unsigned NaN; a finite number too large for float64 is an error."""
    if _GO_INF.fullmatch(value):
        return float(value.lower().replace("infinity", "inf"))
    if value.lower() == "nan":
        return math.nan
    mantissa = re.split(r"[eEpP]", value.lstrip("+-"))[0]
    if not _go_underscores_ok(value):
        return None
    digits = value.replace("_", "")
    if _GO_HEX_FLOAT.fullmatch(value) and any(c in "0123456789abcdefABCDEF" for c in mantissa[2:]):
        try:
            result = float.fromhex(digits)
        except (OverflowError, ValueError):
            return None
    elif _GO_DEC_FLOAT.fullmatch(value) and any(c.isdigit() for c in mantissa):
        result = float(digits)
    else:
        return None
    return result if math.isfinite(result) else None


def range_length(start: int, stop: int, step: int) -> int:
    """len(range(start, stop, step)) for a non-zero step, counted: len() raises past sys.maxsize."""
    return max(0, -(-(stop - start) // step))
