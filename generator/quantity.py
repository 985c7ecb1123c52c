"""Kubernetes resource quantities ("500m", "1.5", "8Gi", "1e3") as exact numbers."""

from __future__ import annotations

import re
from fractions import Fraction

# Decimal suffixes are powers of 1000, binary ones powers of 1024 (Kubernetes resource.Quantity).
_SUFFIX = {"": Fraction(1), "m": Fraction(1, 1000)}
_SUFFIX |= {s: Fraction(1000) ** (i + 1) for i, s in enumerate("kMGTPE")}
_SUFFIX |= {f"{s}i": Fraction(1024) ** (i + 1) for i, s in enumerate("KMGTPE")}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:[eE]([+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?)$")


def parse_quantity(value: object) -> Fraction:
    """Parse a quantity; raises ValueError with the offending text."""
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (examples: 500m, 2, 1.5Gi, 512Mi)")
    number, exponent, suffix = match.groups()
    amount = Fraction(number)
    if exponent is not None:
        return amount * Fraction(10) ** int(exponent)
    return amount * _SUFFIX[suffix or ""]


def format_cpu(amount: Fraction) -> str:
    millis = amount * 1000
    return f"{int(millis)}m" if millis.denominator == 1 and millis % 1000 else f"{float(amount):g}"


def format_memory(amount: Fraction) -> str:
    gib = amount / 2**30
    if gib >= 1:
        return f"{float(gib):.3g}Gi"
    return f"{float(amount / 2**20):.4g}Mi"
