"""The katib-nas trial program: trains one architecture from Katib's parameters and writes its trial record."""

from __future__ import annotations

__all__ = ["main"]

from .cli import main
