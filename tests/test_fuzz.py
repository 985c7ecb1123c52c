"""No input gives a traceback: `katib-nas import` and `katib-nas validate` on real Experiments and
values files with nodes of the wrong type anywhere (a list where a mapping belongs, numbers where
strings belong, nulls, missing keys) exit 0 or 2, and every line they print names the file.

The strategies build each mutation directly (a path that exists, a type the node does not have),
so no case is filtered away. Most cases run in-process for speed; a few run the real command."""

from __future__ import annotations

import contextlib
import copy
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from generator.cli import main

from .conftest import PROFILE_VALUES, ROOT, tool_env

# Cases per test; raise it for a longer hunt (KATIB_NAS_FUZZ_EXAMPLES=5000).
EXAMPLES = int(os.environ.get("KATIB_NAS_FUZZ_EXAMPLES", "150"))
EXPERIMENTS = sorted((ROOT / "tests" / "data" / "katib").glob("*.yaml"))
DOCS = {p.name: yaml.safe_load(p.read_text()) for p in [*EXPERIMENTS, *PROFILE_VALUES]}

Path_ = tuple[str | int, ...]
SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "bool": st.booleans(),
    "int": st.integers(-(2**40), 2**40),
    "float": st.floats(allow_nan=True, allow_infinity=True),
    "str": st.text(max_size=12),
}
KINDS = [*SCALARS, "list", "map"]


def kind_of(node: Any) -> str:
    if isinstance(node, dict):
        return "map"
    if isinstance(node, list):
        return "list"
    if node is None:
        return "null"
    return {bool: "bool", int: "int", float: "float"}.get(type(node), "str")


def value_of(kind: str) -> st.SearchStrategy[Any]:
    scalar = st.one_of(*SCALARS.values())
    if kind == "list":
        return st.lists(scalar | st.dictionaries(st.text(max_size=6), scalar, max_size=2), max_size=3)
    if kind == "map":
        keys = st.text(max_size=8) | st.integers(-3, 3)  # YAML allows any scalar as a key
        return st.dictionaries(keys, scalar | st.lists(scalar, max_size=2), max_size=3)
    return SCALARS[kind]


def node_paths(node: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every path below the root: mapping keys and list indexes."""
    items: list[tuple[str | int, Any]] = []
    if isinstance(node, dict):
        items = list(node.items())
    elif isinstance(node, list):
        items = list(enumerate(node))
    paths = []
    for key, child in items:
        paths.append((*prefix, key))
        paths += node_paths(child, (*prefix, key))
    return paths


def get(node: Any, path: Path_) -> Any:
    for key in path:
        node = node[key]
    return node


@st.composite
def mutated(draw: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` with one to three nodes given another type, or removed."""
    out = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        paths = node_paths(out)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = get(out, path[:-1]), path[-1]
        kind = draw(st.sampled_from(["remove", *(k for k in KINDS if k != kind_of(parent[key]))]))
        if kind == "remove":
            del parent[key]
        else:
            parent[key] = draw(value_of(kind))
    return out


def run_in_process(*args: str) -> tuple[int, str]:
    """The CLI's exit code and stderr; any exception other than a clean exit is a bug and propagates."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, err.getvalue()


def check_outcome(code: int, stderr: str, source: Path) -> None:
    assert code in (0, 2), (code, stderr)
    if code == 2:
        lines = stderr.splitlines()
        assert lines, "exit 2 with nothing said"
        for line in lines:
            if line.startswith("fix these before"):
                continue
            assert line.startswith(str(source.parent)), line  # the file (or one written from it) and the path


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.sampled_from(EXPERIMENTS).flatmap(lambda p: st.tuples(st.just(p.name), mutated(DOCS[p.name]))))
def test_import_never_gives_a_traceback(case: tuple[str, dict[str, Any]]) -> None:
    _, doc = case
    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / "experiment.yaml", Path(tmp) / "values.yaml"
        source.write_text(yaml.safe_dump(doc, sort_keys=False))
        code, stderr = run_in_process("import", str(source), "-o", str(out))
        check_outcome(code, stderr, source)
        assert out.exists() == (code == 0), "a refused import must write nothing"


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.sampled_from(PROFILE_VALUES).flatmap(lambda p: st.tuples(st.just(p.name), mutated(DOCS[p.name]))))
def test_validate_never_gives_a_traceback(case: tuple[str, dict[str, Any]]) -> None:
    _, doc = case
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "values.yaml"
        source.write_text(yaml.safe_dump(doc, sort_keys=False))
        code, stderr = run_in_process("validate", str(source))
        check_outcome(code, stderr, source)


# The real command on a few shapes that broke it before (a list where a mapping belongs, a number
# where a string belongs, a mapping where a list belongs): exit 2, one line naming the path.
SUBPROCESS_CASES = [
    ("import", "hpo-random.yaml", ("spec",), ["not", "a", "map"], "spec: must be a mapping, not a list"),
    ("import", "enas.yaml", ("metadata", "name"), 7, "metadata.name: must be a string, not a number"),
    (
        "import",
        "darts.yaml",
        ("spec", "trialTemplate", "trialSpec", "spec", "template", "spec", "containers"),
        {"name": "x"},
        "spec.trialTemplate.trialSpec.spec.template.spec.containers: must be a list, not a mapping",
    ),
    ("validate", "microk8s.yaml", ("experiment",), [1, 2], "experiment: Input should be a valid dictionary"),
    ("validate", "k3s-gpu.yaml", ("trial", "resources", "limits"), "2", "trial.resources"),
]


@pytest.mark.parametrize(("command", "name", "path", "value", "said"), SUBPROCESS_CASES)
def test_the_real_command_says_the_path(
    command: str, name: str, path: Path_, value: Any, said: str, tmp_path: Path
) -> None:
    doc = copy.deepcopy(DOCS[name])
    get(doc, path[:-1])[path[-1]] = value
    source = tmp_path / name
    source.write_text(yaml.safe_dump(doc, sort_keys=False))
    args = [command, str(source)] + (["-o", str(tmp_path / "out.yaml")] if command == "import" else [])
    proc = subprocess.run(
        [sys.executable, "-m", "generator", *args], capture_output=True, text=True, env=tool_env(), timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"{source}: {said}"), proc.stderr


def test_files_that_are_not_text_and_profile_names_the_os_refuses(tmp_path: Path) -> None:
    """Bytes that are not UTF-8, and a profile name too long for a file name: one line each, exit 2."""
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("profile: micr\xf6k8s\n".encode("latin-1"))
    assert run_in_process("validate", str(latin)) == (2, f"{latin}: not UTF-8 text; save it as UTF-8\n")
    assert run_in_process("import", str(latin)) == (2, f"{latin}: not UTF-8 text; save it as UTF-8\n")
    long_name = tmp_path / "values.yaml"
    long_name.write_text(yaml.safe_dump({**DOCS["microk8s.yaml"], "profile": "p" * 5000}))
    code, stderr = run_in_process("validate", str(long_name))
    assert code == 2 and stderr.startswith(f"{long_name}: profile: profile 'ppp") and stderr.count("\n") == 1
    # A value with a line separator in it is echoed escaped, so the problem stays on one line.
    separated = tmp_path / "separated.yaml"
    separated.write_text(yaml.safe_dump({**DOCS["microk8s.yaml"], "profile": "lab\x1eprofile"}))
    code, stderr = run_in_process("validate", str(separated))
    assert code == 2 and len(stderr.splitlines()) == 1 and "lab\\x1eprofile" in stderr


# What the property tests found, kept as plain cases: each gave a traceback or never finished.
FOUND = [
    (("trial", "resources"), {"limits": 1}, "trial.resources: limits must map resource names to quantities"),
    (
        ("experiment", "metricsCollector"),
        {"kind": "StdOut", "source": {"filter": {"metricsFormat": 5}}},
        "experiment.metricsCollector.source.filter: metricsFormat must be a list of strings",
    ),
    (("server", "replicas"), 10**9, "experiment.parallelTrialCount: no trial fits next to"),
]


@pytest.mark.parametrize(
    ("path", "value", "said"), FOUND, ids=["limits-not-a-mapping", "formats-not-a-list", "replicas"]
)
def test_what_the_fuzzing_found(path: Path_, value: Any, said: str, tmp_path: Path) -> None:
    doc = copy.deepcopy(DOCS["microk8s.yaml"])
    doc.setdefault(path[0], {})[path[1]] = value
    source = tmp_path / "values.yaml"
    source.write_text(yaml.safe_dump(doc))
    code, stderr = run_in_process("validate", str(source))
    assert code == 2 and f"{source}: {said}" in stderr, stderr
