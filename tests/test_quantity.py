"""Kubernetes quantities as the resource checks read them."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction

import pytest

from generator.quantity import QUANTITY_MAX, format_cpu, format_memory, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Fraction(1, 2)),
        ("2", 2),
        ("1.5", Fraction(3, 2)),
        ("8Gi", 8 * 2**30),
        ("512Mi", 512 * 2**20),
        ("1e3", 1000),
        ("2k", 2000),
        ("1G", 10**9),
        (4, 4),
    ],
)
def test_parse(text: str, value: Fraction) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["one", "1.5.2", "Gi", "10 Gi", "-"])
def test_reject(text: str) -> None:
    with pytest.raises(ValueError, match="is not a Kubernetes quantity"):
        parse_quantity(text)


def test_format() -> None:
    assert format_cpu(Fraction(4050, 1000)) == "4050m"
    assert format_cpu(Fraction(15)) == "15"
    assert format_memory(Fraction(13 * 2**30)) == "13Gi"
    assert format_memory(Fraction(10 * 2**20)) == "10Mi"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1e400", QUANTITY_MAX),  # Kubernetes caps a quantity at the largest int64
        ("-1e400", -QUANTITY_MAX),
        ("99999999999999999999Ei", QUANTITY_MAX),
        ("1e999999999", QUANTITY_MAX),
        ("1e-99999999", Fraction(1, 10**9)),  # and rounds a non-zero one up to a nano unit
        ("0e99999999999999999999999", 0),
        ("1" + "0" * 50 + "e-50", 1),
    ],
)
def test_parse_as_kubernetes_keeps_it(text: str, value: Fraction) -> None:
    assert parse_quantity(text) == value
    assert format_cpu(parse_quantity(text)) and format_memory(parse_quantity(text))


def test_a_huge_exponent_is_not_computed() -> None:
    """10**999999999 as a Fraction took minutes (a hang): the exponent is bounded first."""
    code = "from generator.quantity import parse_quantity; print(parse_quantity('1e999999999'))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert proc.stdout == f"{2**63 - 1}\n"


def test_a_number_too_long_to_read_is_refused() -> None:
    with pytest.raises(ValueError, match="^a quantity of 5000 characters is too long to read; write it shorter"):
        parse_quantity("1" * 5000)
