"""Reading values files and turning pydantic errors into `FILE: path: message` lines."""

from __future__ import annotations

from collections.abc import Iterator
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
    "finite_number": "write a number, not .inf or .nan",
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
    r"^[0-9]+\.[0-9]+$": "use the cluster's major.minor version, such as 1.31",
}


def format_validation_error(source: str, exc: ValidationError) -> list[str]:
    return [str(p) for p in validation_problems(source, exc)]


# Error kinds that say what is wrong with a value of the right type.
_TELLING = ("finite_number",)


def validation_problems(source: str, exc: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    kinds: list[str] = []
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
        kinds.append(kind)
    # A union failure is reported once per member; keep one line per path, the first, unless a member
    # took the value's type and refused its value (a number member refusing .inf says more than "not a string").
    chosen: dict[str, Problem] = {}
    for p, kind in zip(problems, kinds, strict=True):
        if p.path not in chosen or kind in _TELLING:
            chosen[p.path] = p
    return list(chosen.values())


def yaml_error_text(exc: yaml.YAMLError) -> str:
    """PyYAML's error in one line: where, then what (its own text spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}: " if mark is not None else ""
    if isinstance(exc, _Refused):
        return f"{where}{exc.problem}"
    return f"{where}not valid YAML ({getattr(exc, 'problem', None) or exc})"


# What a YAML file may hold once its aliases (*name) are expanded: far beyond any values file, profile or
# Experiment, and far below what would take the checks and helm minutes (nine levels of nine aliases
# expand to 387 million values).
MAX_VALUES = 100_000
# How deep mappings and lists may nest: a Kubernetes object is about a dozen levels deep.
MAX_DEPTH = 100
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_VALUE = "tag:yaml.org,2002:value"  # a bare `=`, which PyYAML cannot construct


class _Refused(yaml.YAMLError):
    """A YAML file that parses but that we do not read: its `problem` says why and what to do."""

    def __init__(self, problem: str, mark: yaml.Mark | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader reading scalars as Helm's Go YAML does: an unquoted date or time stays the
    text written (Go hands it on as a string, so the chart renders it as written), and every value is
    one that JSON, helm and the models take."""

    def construct_document(self, node: yaml.Node) -> Any:
        _check_size(node)
        return super().construct_document(node)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # Python reads at most 4300 digits
            raise _Refused(
                f"a number of {len(str(node.value))} characters is too long to read; shorten it, or quote it if it "
                "is text",
                node.start_mark,
            ) from None

    def construct_binary_text(self, node: yaml.ScalarNode) -> str:
        """Go reads !!binary as the text it encodes."""
        data = self.construct_yaml_binary(node)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refused("!!binary data that is not UTF-8 text; write the text itself", node.start_mark) from None

    def construct_text(self, node: yaml.ScalarNode) -> str:
        return self.construct_yaml_str(node)

    def construct_map_of(self, node: yaml.MappingNode) -> Iterator[dict[Any, Any]]:
        return self.construct_yaml_map(node)

    def construct_list_of(self, node: yaml.SequenceNode) -> Iterator[list[Any]]:
        return self.construct_yaml_seq(node)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_TIMESTAMP, _VALUE)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_constructor(_TIMESTAMP, _Loader.construct_text)
_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_constructor("tag:yaml.org,2002:binary", _Loader.construct_binary_text)
# A set is a mapping of keys to nulls, ordered maps and pairs are lists of one-key mappings, as Go reads them.
_Loader.add_constructor("tag:yaml.org,2002:set", _Loader.construct_map_of)
_Loader.add_constructor("tag:yaml.org,2002:omap", _Loader.construct_list_of)
_Loader.add_constructor("tag:yaml.org,2002:pairs", _Loader.construct_list_of)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_size(root: yaml.Node) -> None:
    """Refuse a document that nests too deeply, refers to itself, or whose aliases expand past MAX_VALUES.
    An alias is the node it names, so the walk counts each node once per use, remembering each count."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_nodes: set[int] = set()  # the nodes on the path from the root to the node being walked
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            if size[key] > MAX_VALUES:
                raise _Refused(
                    f"holds more than {MAX_VALUES} values once its aliases (*name) are expanded; write the values "
                    "out, or use fewer aliases",
                    node.start_mark,
                )
            if depth[key] > MAX_DEPTH:
                raise _Refused(
                    f"nests mappings and lists more than {MAX_DEPTH} levels deep; flatten it", node.start_mark
                )
            continue
        if key in size:
            continue
        if key in open_nodes:
            raise _Refused("an alias (*name) refers to the node that holds it; remove the loop", node.start_mark)
        open_nodes.add(key)
        stack.append((node, True))
        stack += [(k, False) for k in _children(node) if id(k) not in size]


def parse_yaml(text: str, documents: bool = False) -> Any:
    """The YAML in `text` (a list of its documents with `documents`), read as Helm reads it. Raises
    yaml.YAMLError, with a one-line yaml_error_text, for anything that is not YAML or that we refuse."""
    try:
        if documents:
            return list(yaml.load_all(text, Loader=_Loader))  # _Loader is a SafeLoader
        return yaml.load(text, Loader=_Loader)
    except RecursionError:  # deeper than Python's stack, far past MAX_DEPTH
        raise _Refused(f"nests mappings and lists more than {MAX_DEPTH} levels deep; flatten it") from None


class InputFileError(ValueError):
    """An input file that cannot be read as YAML; `reason` is the one-line message without the file name."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_yaml_file(path: Path, missing: str, documents: bool = False) -> Any:
    """Read and parse a YAML input file. `missing` is the fix for a file that is not there."""
    try:
        if not path.is_file():
            raise InputFileError(f"file not found; {missing}")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputFileError("not UTF-8 text; save it as UTF-8") from None
    except PermissionError:
        raise InputFileError("cannot be read (permission denied); make it readable, or pass another file") from None
    except OSError as exc:
        raise InputFileError(f"cannot be read ({exc.strerror or exc}); pass another file") from None
    try:
        return parse_yaml(text, documents)
    except yaml.YAMLError as exc:
        raise InputFileError(yaml_error_text(exc)) from None


def load_values_file(path: Path) -> dict[str, Any]:
    """Read a values file: a clear error for a missing or unreadable file, bad YAML or a non-mapping top level."""
    try:
        data = read_yaml_file(path, "pass the path of a values file")
    except InputFileError as exc:
        raise ValuesError([Problem(str(path), "", exc.reason)]) from None
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
