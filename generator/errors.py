"""Errors a user can fix. The CLI catches GeneratorError, prints `.message` and exits 2."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


def printable(text: str) -> str:
    """A value echoed in a message cannot break its line: control characters and line separators
    (which str.splitlines and terminals break on) are shown as escapes."""
    return "".join(repr(c)[1:-1] if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)


@dataclass(frozen=True)
class Problem:
    """One finding about a values file: where it is, what is wrong, and how to fix it."""

    file: str
    path: str
    message: str
    warning: bool = False

    def __str__(self) -> str:
        level = "warning: " if self.warning else ""
        where = f"{self.path}: " if self.path else ""
        return printable(f"{self.file}: {level}{where}{self.message}")


class GeneratorError(Exception):
    """Base class: a mistake in the user's input, reported without a traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValuesError(GeneratorError, ValueError):
    """A values file that cannot be used; carries every problem found, one line each."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class ProfileError(GeneratorError, ValueError):
    """A cluster profile that is missing or malformed."""


class ClusterError(GeneratorError):
    """The cluster cannot be reached, or is not ready for the release (such as an unlabelled namespace)."""


class ImportExperimentError(GeneratorError, ValueError):
    """A Katib Experiment that cannot be turned into a values file."""


class HelmError(GeneratorError):
    """helm failed; keeps helm's stderr and shows the chart's `katib-nas:` fail line when there is one."""

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr


class LocalRunError(GeneratorError, ValueError):
    """A values file describes something the local runner cannot do, or the local run failed."""


class CompareError(GeneratorError, ValueError):
    """`katib-nas compare` was given arms, seeds or trial records it cannot compare."""


class FlagError(GeneratorError, ValueError):
    """A command-line flag that cannot be used: a release name helm refuses, an output path that cannot be written."""
