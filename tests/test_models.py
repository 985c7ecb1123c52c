"""The pydantic models are the single source of truth: values.yaml, the schema and the docs follow them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel

from generator.models import ChartValues, StrictModel
from generator.schema import NOT_DRAFT_07, build_schema, schema_drifted
from generator.validate import chart_defaults
from generator.yamlio import coalesce

from .conftest import CHART, CI_VALUES, PROFILE_VALUES

VALUES_YAML = CHART / "values.yaml"


def test_values_yaml_equals_the_model_defaults() -> None:
    data = yaml.safe_load(VALUES_YAML.read_text())
    assert data == chart_defaults()


def _documented_paths(model: type[BaseModel] = ChartValues, prefix: str = "") -> list[str]:
    """Every value a user sets: fields that are not one of our closed objects (those hold more values)."""
    paths = []
    for name, info in model.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, StrictModel):
            paths += _documented_paths(kind, f"{prefix}{name}.")
        else:
            paths.append(f"{prefix}{name}")
    return paths


def _line_of(lines: list[str], path: str) -> int:
    """Line number of a dotted key in values.yaml (two spaces of indent per level)."""
    start = 0
    parts = path.split(".")
    for depth, key in enumerate(parts):
        pattern = re.compile(rf"^{'  ' * depth}{re.escape(key)}:")
        start = next(i for i in range(start, len(lines)) if pattern.match(lines[i]))
    return start


def test_every_value_is_documented_with_a_helm_docs_comment() -> None:
    lines = VALUES_YAML.read_text().splitlines()
    paths = _documented_paths()
    undocumented = []
    for path in paths:
        above = _line_of(lines, path) - 1
        while above >= 0 and lines[above].strip().startswith("#") and not lines[above].strip().startswith("# --"):
            above -= 1
        if above < 0 or not lines[above].strip().startswith("# --"):
            undocumented.append(path)
    assert not undocumented, f"values without a `# --` comment: {undocumented}"
    assert len(paths) > 60


def test_committed_schema_matches_the_models() -> None:
    assert not schema_drifted(), "run `katib-nas schema` and commit charts/katib-nas/values.schema.json"


def _keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in _keys(v)}
    if isinstance(node, list):
        return {k for v in node for k in _keys(v)}
    return set()


def test_schema_keeps_to_draft_07() -> None:
    schema = build_schema()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    assert not (_keys(schema) & NOT_DRAFT_07)
    assert schema["additionalProperties"] is False
    experiment = schema["definitions"]["Experiment"]
    assert experiment["additionalProperties"] is False
    assert experiment["properties"]["parallelTrialCount"]["minimum"] == 1
    assert schema["definitions"]["Server"]["properties"]["mode"]["enum"] == ["fastapi", "kserve"]


@pytest.mark.parametrize("path", PROFILE_VALUES + CI_VALUES, ids=lambda p: p.name)
def test_shipped_values_files_pass_the_schema(path: Path) -> None:
    merged = coalesce(ChartValues().model_dump(mode="json"), yaml.safe_load(path.read_text()))
    jsonschema.validate(merged, build_schema(), cls=jsonschema.Draft7Validator)


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"experimnt": {}}, "Additional properties are not allowed ('experimnt' was unexpected)"),
        ({"server": {"mode": "seldon"}}, "'seldon' is not one of ['fastapi', 'kserve']"),
        ({"experiment": {"maxTrialCount": 0}}, "0 is less than the minimum of 1"),
        ({"server": {"image": {"repository": ""}}}, "'' should be non-empty"),
        ({"trial": {"framework": "tensorflow"}}, "'tensorflow' is not one of ['pytorch', 'keras']"),
    ],
)
def test_schema_rejects_what_plain_helm_install_must_reject(override: dict[str, Any], fragment: str) -> None:
    merged = coalesce(ChartValues().model_dump(mode="json"), override)
    with pytest.raises(jsonschema.ValidationError) as err:
        jsonschema.validate(merged, build_schema(), cls=jsonschema.Draft7Validator)
    assert fragment in str(err.value.message)


def test_every_field_pattern_is_said_in_words() -> None:
    """A value that misses a field's pattern gets words that say the fix, never the regular expression."""
    from generator.models import ClusterProfile
    from generator.yamlio import PATTERN_WORDS

    def patterns(node: Any) -> set[str]:
        if isinstance(node, dict):
            return ({node["pattern"]} if "pattern" in node else set()).union(*map(patterns, node.values()))
        if isinstance(node, list):
            return set().union(*map(patterns, node))
        return set()

    assert patterns(ChartValues.model_json_schema()) | patterns(ClusterProfile.model_json_schema()) <= set(
        PATTERN_WORDS
    )
