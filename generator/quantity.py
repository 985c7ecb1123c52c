"""Kubernetes resource quantities ("500m", "1.5", "8Gi", "1e3") as exact numbers."""

from __future__ import annotations

import math
import re
from fractions import Fraction

# Decimal suffixes are powers of 1000, binary ones powers of 1024 (Kubernetes resource.Quantity).
_SUFFIX = {"": Fraction(1), "m": Fraction(1, 1000)}
_SUFFIX |= {s: Fraction(1000) ** (i + 1) for i, s in enumerate("kMGTPE")}
_SUFFIX |= {f"{s}i": Fraction(1024) ** (i + 1) for i, s in enumerate("KMGTPE")}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:[eE]([+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?)$")
# What resource.ParseQuantity keeps of an amount: it caps it at the largest int64 and rounds it up
# (away from zero) to a whole number of nano units.
QUANTITY_MAX = Fraction(2**63 - 1)
_NANO = Fraction(1, 10**9)
# Digits of a quantity's number read: far more than any int64 or nano fraction needs, far below Python's limit.
MANTISSA_MAX = 100


def parse_quantity(value: object) -> Fraction:
    """Parse a quantity as Kubernetes keeps it; raises ValueError with the offending text."""
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (examples: 500m, 2, 1.5Gi, 512Mi)")
    number, exponent, suffix = match.groups()
    if len(number) > MANTISSA_MAX:
        raise ValueError(f"a quantity of {len(text)} characters is too long to read; write it shorter, such as 2Gi")
    scale = _SUFFIX[suffix or ""] if exponent is None else _power_of_ten(exponent, len(number))
    amount = Fraction(number) * scale
    magnitude = min(abs(amount), QUANTITY_MAX)
    return (-1 if amount < 0 else 1) * math.ceil(magnitude / _NANO) * _NANO


def _power_of_ten(exponent: str, mantissa_length: int) -> Fraction:
    """10**exponent, bounded: a mantissa of n characters lies between 10**-n and 10**n (or is 0), so with an
    exponent past n + 20 either way a quantity is capped, or rounded up to one nano unit, all the same, and
    10**999999999 is never computed."""
    bound = mantissa_length + 20
    digits = exponent.lstrip("+-").lstrip("0") or "0"
    power = bound if len(digits) > len(str(bound)) else min(int(digits), bound)
    return Fraction(10) ** (-power if exponent.startswith("-") else power)


def format_cpu(amount: Fraction) -> str:
    millis = amount * 1000
    return f"{int(millis)}m" if millis.denominator == 1 and millis % 1000 else f"{float(amount):g}"


def format_memory(amount: Fraction) -> str:
    gib = amount / 2**30
    if gib >= 1:
        return f"{float(gib):.3g}Gi"
    return f"{float(amount / 2**20):.4g}Mi"
