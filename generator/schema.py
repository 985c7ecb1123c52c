"""values.schema.json, generated from `ChartValues`.

Helm <= 3.18 validates with gojsonschema (drafts 4/6/7 only), so the schema keeps to draft-07
keywords: definitions instead of $defs, no prefixItems, no unevaluated*.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .models import ChartValues

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "charts" / "katib-nas" / "values.schema.json"
DRAFT_07 = "http://json-schema.org/draft-07/schema#"
# Keywords newer than draft-07 that gojsonschema would silently ignore.
NOT_DRAFT_07 = {
    "$defs",
    "prefixItems",
    "unevaluatedProperties",
    "unevaluatedItems",
    "dependentRequired",
    "dependentSchemas",
    "$anchor",
    "$dynamicRef",
    "minContains",
    "maxContains",
}


def _clean(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "title":
                continue
            if key == "description" and isinstance(value, str):
                value = value.replace("@default --", "Default:")
            out[key] = _clean(value)
        return out
    if isinstance(node, list):
        return [_clean(v) for v in node]
    return node


def build_schema() -> dict[str, Any]:
    raw = ChartValues.model_json_schema(ref_template="#/definitions/{model}", mode="validation")
    definitions = raw.pop("$defs", {})
    schema: dict[str, Any] = {"$schema": DRAFT_07, **_clean(raw)}
    schema["definitions"] = {name: _clean(d) for name, d in sorted(definitions.items())}
    # Helm passes `global` to every chart's values; it is not ours to close.
    schema["properties"]["global"] = {"type": "object", "description": "Helm's global values (unused)."}
    leftovers = sorted(_keywords(schema) & NOT_DRAFT_07)
    if leftovers:
        raise AssertionError(f"schema uses keywords newer than draft-07: {leftovers}")
    return schema


def _keywords(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in {"properties", "definitions"}:
                found.add(key)
            found |= _keywords(value)
    elif isinstance(node, list):
        for value in node:
            found |= _keywords(value)
    return found


def render_schema() -> str:
    return json.dumps(build_schema(), indent=2, sort_keys=False) + "\n"


def write_schema(path: Path = SCHEMA_PATH) -> bool:
    """Write the schema; returns True when the file changed."""
    text = render_schema()
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return True


def schema_drifted(path: Path = SCHEMA_PATH) -> bool:
    return not path.is_file() or path.read_text(encoding="utf-8") != render_schema()
