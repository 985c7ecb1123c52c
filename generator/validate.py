"""`katib-nas validate`: every check of a values file, against the cluster profile it names."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .checks_data import check_data
from .checks_promotion import check_promotion
from .checks_resources import check_resources
from .checks_search import check_search
from .errors import FlagError, Problem, ProfileError, printable
from .models import ChartValues, ClusterProfile
from .profiles import load_profile
from .suggestion_services import check_algorithm_settings, check_later_requests, check_one_request, check_resume
from .yamlio import coalesce, dropped_defaults, load_values_file, validation_problems

DEFAULT_RELEASE = "nas"
# Helm's rule for release names (chartutil.ValidateReleaseName).
RELEASE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
RELEASE_NAME_MAX = 53


def check_release(release: str) -> None:
    """Refuse a --release that helm refuses, before anything is read or rendered."""
    if len(release) > RELEASE_NAME_MAX or not RELEASE_NAME.match(release):
        raise FlagError(
            printable(
                f"--release {release!r}: helm refuses it as a release name; use at most {RELEASE_NAME_MAX} lowercase "
                "letters, digits, '-' and '.', starting and ending with a letter or digit"
            )
        )


def chart_defaults() -> dict[str, Any]:
    """The chart's values.yaml, as the models define it (a test keeps the two equal)."""
    defaults: dict[str, Any] = _without_unset_list_fields(ChartValues().model_dump(mode="json"))
    return defaults


def _without_unset_list_fields(node: Any, in_list: bool = False) -> Any:
    """values.yaml spells list items (parameters, settings) without their null fields."""
    if isinstance(node, dict):
        return {k: _without_unset_list_fields(v, in_list) for k, v in node.items() if not (in_list and v is None)}
    if isinstance(node, list):
        return [_without_unset_list_fields(v, True) for v in node]
    return node


def null_message(default: Any) -> str:
    shown = "" if isinstance(default, dict | list) and default else f" {json.dumps(default)}"
    return (
        f"is null, so helm drops the chart's default{shown} and the templates render without it; "
        "delete the line to keep the default, or set a value"
    )


@dataclass
class Report:
    """Outcome of validating one file: the parsed values (when they parse) and every finding."""

    file: str
    values: ChartValues | None = None
    profile: ClusterProfile | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    # Trials the profile runs at once (known once the values parse and the profile loads).
    trials_at_once: int | None = None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.warning]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.warning]


def validate_data(
    data: dict[str, Any],
    source: str,
    base_dir: Path | None = None,
    release: str = DEFAULT_RELEASE,
    profile: ClusterProfile | None = None,
) -> Report:
    report = Report(source, raw=data)
    # Helm validates and renders the file merged over the chart defaults; so do we.
    defaults = chart_defaults()
    report.problems = [
        Problem(source, path, null_message(default)) for path, default in dropped_defaults(defaults, data)
    ]
    merged = coalesce(defaults, data)
    try:
        values = ChartValues.model_validate(merged)
    except ValidationError as exc:
        nulled = {p.path for p in report.problems}  # a null is one problem, not also a missing field
        report.problems += [p for p in validation_problems(source, exc) if p.path not in nulled]
        return report
    if report.problems:
        return report
    report.values = values
    report.problems += [Problem(source, path, msg) for path, msg in check_search(values, release)]
    report.problems += [Problem(source, path, msg, warning) for path, msg, warning in check_promotion(values)]
    report.problems += [Problem(source, path, msg, warning) for path, msg, warning in check_data(values)]
    if profile is None:
        if not values.profile:
            report.problems.append(
                Problem(
                    source,
                    "profile",
                    "is unset; name the cluster this file is for: microk8s, k3s-gpu or a profile file",
                )
            )
            return report
        try:
            profile = load_profile(values.profile, base_dir)
        except ProfileError as exc:  # one line per problem in the profile file
            report.problems += [Problem(source, "profile", line) for line in exc.message.split("\n")]
            return report
    report.profile = profile
    settings = check_algorithm_settings(values.experiment, profile.suggestionServices)
    report.problems += [Problem(source, path, msg, warning) for path, msg, warning in settings]
    explicit = "resumePolicy" in (data.get("experiment") or {})
    resume = check_resume(values.experiment, profile.suggestionServices, explicit)
    report.problems += [Problem(source, path, msg, warning) for path, msg, warning in resume]
    for requests in (check_one_request, check_later_requests):
        found = requests(values.experiment, profile.suggestionServices)
        report.problems += [Problem(source, path, msg, warning) for path, msg, warning in found]
    findings, report.trials_at_once = check_resources(values, profile)
    report.problems += [Problem(source, path, msg, warning) for path, msg, warning in findings]
    return report


def validate_file(path: Path, release: str = DEFAULT_RELEASE) -> Report:
    data = load_values_file(path)
    return validate_data(data, str(path), path.parent, release)
