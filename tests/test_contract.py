"""The trial contract has one home: no module outside katib_nas_contract spells a record file name, so
a rename there reaches every trainer, the server, the batch job, the local runner and the report."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from katib_nas_contract import record

from .conftest import ROOT

NAMES = sorted(
    {
        record.COMPLETE,
        record.PARAMS,
        record.STATUS,
        record.CURVE,
        record.METRICS,
        record.MODEL,
        record.POINTER,
        *record.CHECKPOINT.values(),
        *record.WEIGHTS.values(),
    }
)
# A string that is a record file's name or a path or glob ending in one ("model.onnx", "*/curve.json").
SPELLED = re.compile(rf"^(.*/)?({'|'.join(re.escape(n) for n in NAMES)})$")
CODE_ROOTS = ("generator", "images", "bench", "ci")


def _sources() -> list[Path]:
    contract = ROOT / "images" / "contract"
    return sorted(
        path
        for folder in CODE_ROOTS
        for path in (ROOT / folder).rglob("*.py")
        if contract not in path.parents and "__pycache__" not in path.parts
    )


def spelled_names(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string constant (f-string parts included) that names a record file."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SPELLED.match(node.value):
            found.append((node.lineno, node.value))
    return sorted(found)


def test_the_finder_sees_names_in_plain_strings_paths_and_f_strings() -> None:
    source = 'a = "model.onnx"\nb = root / "metrics.json"\nc = glob(f"*/{x}/curve.json")\nd = "COMPLETE"\n'
    assert [text for _, text in spelled_names(source)] == ["model.onnx", "metrics.json", "/curve.json", "COMPLETE"]
    assert spelled_names('"""Follow best.json to the model."""\nx = "the best.json pointer"\n') == []


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_outside_the_contract_spells_a_record_file_name(path: Path) -> None:
    found = spelled_names(path.read_text(encoding="utf-8"))
    assert not found, (
        f"{path.relative_to(ROOT)} spells record names {found}; import them from katib_nas_contract.record"
    )
