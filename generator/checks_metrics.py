"""What Katib's metrics collection does to a trial, checked before install.

Katib's pod mutator (pkg/webhook/v1beta1/pod) mounts an emptyDir at the directory of the metrics
file (StdOut: /var/log/katib, File: the file's directory, TensorFlowEvent: the directory itself) in
the trainer and its collector sidecar, so that directory is writable whatever the image, but it must
not be a directory the chart already mounts: the API server refuses a pod with two volumes at one
mountPath, so every trial pod would be refused. Katib compiles metricsFormat filters with Go's
regexp (RE2 syntax), checked here with RE2 itself (the google-re2 wheel), so no Go is needed.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import Any

import re2

from .models import ChartValues

Finding = tuple[str, str]

# common.DefaultFilePath: the file Katib's StdOut collector redirects the trainer's output to; its
# directory is where Katib's own File-collector examples put metrics files too.
KATIB_METRICS_FILE = "/var/log/katib/metrics.log"

_RE2 = re2.Options()
_RE2.log_errors = False  # RE2 would also print each parse error on stderr
# RE2's default 8 MiB program budget refuses large repeats Go compiles (`\pL{1000}`); Go's own bounds
# (regexp/syntax: 1000 per repeat, a program size limit) are what Katib meets, and they fit in this.
_RE2.max_mem = 256 << 20
# Katib's webhook: a filter must have "two top subexpressions" (validator.go, the same expression).
_TWO_GROUPS_TEXT = re2.compile(r".*\(.*\).*\(.*\).*", options=_RE2)


def compile_like_go(pattern: str) -> Any:
    """The pattern compiled by RE2 within Go's bounds; raises re2.error where Go's regexp would refuse."""
    return re2.compile(pattern, options=_RE2)


def chart_mounts(values: ChartValues) -> dict[str, str]:
    """mountPaths of the trainer container as the chart writes them, and what each is."""
    return {"/tmp": "the chart's /tmp emptyDir", values.persistence.mountPath: "the model PVC"}


def _go_dir(path: str) -> str:
    """Go's filepath.Dir: the path without its last element, cleaned (no `//`, `.` or `..`)."""
    cleaned = posixpath.normpath(posixpath.dirname(path))
    return "/" + cleaned.lstrip("/") if cleaned.startswith("/") else cleaned


def metrics_directory(values: ChartValues) -> tuple[str, str] | None:
    """(mountPath of Katib's metrics emptyDir, the value path that decides it), as the pod mutator's
    getMountPath and mutateMetricsCollectorVolume compute it: a directory path is used as written."""
    mc = values.experiment.metricsCollector
    fsp = mc.source.fileSystemPath if mc.source else None
    if mc.kind == "StdOut":
        return _go_dir(KATIB_METRICS_FILE), "experiment.metricsCollector.kind"
    if fsp is None or not fsp.path.startswith("/") or mc.kind not in ("File", "TensorFlowEvent", "Custom"):
        return None
    directory = fsp.path if mc.kind == "TensorFlowEvent" or (mc.kind == "Custom" and fsp.kind == "Directory") else None
    directory = directory or _go_dir(fsp.path)
    return directory, "experiment.metricsCollector.source.fileSystemPath.path"


def check_metrics_directory(values: ChartValues) -> Iterator[Finding]:
    found = metrics_directory(values)
    if found is None:
        return
    directory, path = found
    taken = chart_mounts(values).get(directory)
    if taken is None:
        return
    mc = values.experiment.metricsCollector
    fix = (
        f"put the metrics file in a directory of its own, such as {KATIB_METRICS_FILE}"
        if mc.kind != "TensorFlowEvent"
        else "use a directory of its own for the event files, such as /var/log/katib/tfevent"
    )
    if mc.kind == "StdOut":
        fix = f"move persistence.mountPath off {directory}"
    yield (
        path,
        f"Katib mounts its metrics emptyDir at {directory}, where {taken} is already mounted, so the API "
        f"server refuses every trial pod (duplicate mountPath); {fix}",
    )


def _has_any_byte_escape(pattern: str) -> bool:
    """Whether the pattern uses \\C, which C++ RE2 accepts and Go's regexp refuses (text quoted
    between \\Q and \\E, or to the end, is literal)."""
    i = 0
    while i < len(pattern) - 1:
        if pattern[i] != "\\":
            i += 1
        elif pattern[i + 1] == "Q":
            end = pattern.find("\\E", i + 2)
            i = len(pattern) if end < 0 else end + 2
        elif pattern[i + 1] == "C":
            return True
        else:
            i += 2
    return False


def regex_error(pattern: str) -> str | None:
    """RE2's reason for refusing a pattern (what Go's regexp.Compile refuses too), or None."""
    if _has_any_byte_escape(pattern):
        return "invalid escape sequence: \\C (any byte) is not in Go's RE2 syntax"
    try:
        compile_like_go(pattern)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        return reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
    return None


def check_metrics_formats(formats: list[str], path: str) -> Iterator[Finding]:
    for i, pattern in enumerate(formats):
        error = regex_error(pattern)
        if error is not None:
            yield (
                f"{path}[{i}]",
                f"Katib compiles it with Go's regexp, which refuses it ({error}); use RE2 syntax: no "
                "lookarounds, backreferences or possessive quantifiers",
            )
        elif not _TWO_GROUPS_TEXT.search(pattern):
            yield (
                f"{path}[{i}]",
                "Katib's webhook needs two groups in parentheses, the metric name first and then its value",
            )
        elif compile_like_go(pattern).groups < 2:
            yield (
                f"{path}[{i}]",
                "has fewer than two capturing groups; Katib's collector takes the metric name from the first "
                "and its value from the second and would record nothing, make both groups capturing",
            )
