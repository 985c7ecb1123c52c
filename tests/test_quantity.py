"""Kubernetes quantities as the resource checks read them."""

from __future__ import annotations

from fractions import Fraction

import pytest

from generator.quantity import format_cpu, format_memory, parse_quantity


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
