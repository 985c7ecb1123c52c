"""Reading values files and turning pydantic errors into `FILE: path: message` lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import Problem, ValuesError


def value_path(loc: tuple[str | int, ...] | list[str | int]) -> str:
    """('experiment', 'parameters', 0, 'name') -> 'experiment.parameters[0].name'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


# How to fix the pydantic error kinds whose own message does not say.
_FIXES = {
    "extra_forbidden": "remove it or fix its spelling",
    "missing": "add it",
    "string_too_long": "shorten it",
}


# What each field pattern of the models means, in words: messages never show a bare regular expression.
# (tests/test_models.py checks that every pattern in the models has its words here.)
PATTERN_WORDS = {
    r"^([a-z]([-a-z0-9]*[a-z0-9])?)?$": "use lowercase letters, digits and '-', starting with a letter and "
    "ending with a letter or digit",
    r"^(sha256:[a-f0-9]{64})?$": "use 'sha256:' followed by 64 lowercase hexadecimal digits, or leave it empty",
    r"^/": "use an absolute path (starting with /)",
    r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$": "use a size such as 2Gi or 500Mi",
    r"^[A-Za-z][A-Za-z0-9_.-]*$": "start with a letter and use only letters, digits, '_', '.' and '-'",
    r"^[^{}]+$": "use a non-empty name without '{' or '}'",
    r"^[a-z0-9-]+$": "use only lowercase letters, digits and '-'",
    r"^[0-9]+(Ki|Mi|Gi)$": "use a whole size in Ki, Mi or Gi, such as 512Mi",
    r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$": "use a duration in hours, minutes and whole seconds, such as 24h or 90s",
    r"^[0-9]*[1-9][0-9]*(ms|s|m|h|d|w|y)$": "use a non-zero Prometheus duration in one unit, such as 30s, 10m or 1h",
    r"^[a-zA-Z_][a-zA-Z0-9_]*$": "use a Prometheus label name: letters, digits and '_', not starting with a digit",
}


def format_validation_error(source: str, exc: ValidationError) -> list[str]:
    return [str(p) for p in validation_problems(source, exc)]


def validation_problems(source: str, exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        # pydantic appends the union member tried ('str', 'int') to the location: drop those.
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p in {"str", "int", "float", "bool"})]
        kind = err["type"]
        msg = err["msg"]
        if kind == "extra_forbidden":
            msg = "unknown key"
        elif kind == "value_error":  # our own validators' messages say the fix already
            msg = str(err.get("ctx", {}).get("error", msg))
        elif kind == "string_pattern_mismatch":
            pattern = str(err.get("ctx", {}).get("pattern", ""))
            msg = f"{err['input']!r} is not allowed here; {PATTERN_WORDS.get(pattern, 'fix its spelling')}"
        fix = _FIXES.get(kind, "")
        problems.append(Problem(source, value_path(loc), f"{msg}; {fix}" if fix else msg))
    # A union failure is reported once per member; keep one line per path.
    seen: set[str] = set()
    unique = []
    for p in problems:
        if p.path not in seen:
            seen.add(p.path)
            unique.append(p)
    return unique


def yaml_error_text(exc: yaml.YAMLError) -> str:
    """PyYAML's error in one line: where, then what (its own text spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}: " if mark is not None else ""
    return f"{where}not valid YAML ({getattr(exc, 'problem', exc)})"


def load_values_file(path: Path) -> dict[str, Any]:
    """Read a values file: a clear error for a missing file, bad YAML or a non-mapping top level."""
    if not path.is_file():
        raise ValuesError([Problem(str(path), "", "file not found; pass the path of a values file")])
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValuesError([Problem(str(path), "", "not UTF-8 text; save it as UTF-8")]) from None
    except yaml.YAMLError as exc:
        raise ValuesError([Problem(str(path), "", yaml_error_text(exc))]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValuesError([Problem(str(path), "", "the top level must be a mapping of values")])
    return data


def coalesce(defaults: Any, overrides: Any) -> Any:
    """Merge a values file over the chart defaults exactly as Helm's chartutil.CoalesceValues does:
    mappings merge key by key, lists and scalars replace, a null drops the key (a top-level null
    only where the chart has that key), and a mapping over a non-mapping default is kept as written."""
    if not isinstance(defaults, dict) or not isinstance(overrides, dict):
        return overrides
    merged = dict(overrides)
    for key, default in defaults.items():
        if key not in merged:
            merged[key] = default
        elif merged[key] is None:
            del merged[key]
        elif isinstance(merged[key], dict) and isinstance(default, dict):
            merged[key] = _coalesce_tables(merged[key], default)
    return merged


def _coalesce_tables(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalesceTablesFullKey: below the top level every null key is dropped, chart key or not."""
    out = {k: v for k, v in dst.items() if v is not None}
    for key, default in src.items():
        if key in dst:
            if isinstance(out.get(key), dict) and isinstance(default, dict):
                out[key] = _coalesce_tables(out[key], default)
        else:
            out[key] = default
    return out


def dropped_defaults(defaults: Any, overrides: Any, path: str = "") -> list[tuple[str, Any]]:
    """(path, chart default) of each null in the values file that makes Helm drop a default that is
    not null itself. The templates then render without it (0, "" or a failed render), while the
    models would quietly fill the default back in, so validate refuses these."""
    if not isinstance(defaults, dict) or not isinstance(overrides, dict):
        return []
    found = []
    for key, value in overrides.items():
        if key not in defaults:
            continue
        where = f"{path}.{key}" if path else str(key)
        if value is None and defaults[key] is not None:
            found.append((where, defaults[key]))
        elif isinstance(value, dict):
            found += dropped_defaults(defaults[key], value, where)
    return found
