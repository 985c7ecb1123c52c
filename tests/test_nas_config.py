"""A nasConfig whose values Katib's Go types cannot hold is refused by path, in one line, before
the enas and darts services' own checks (which tests/test_suggestion_services.py compares with the
services themselves)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from generator.nas_config import check_nas_config
from generator.validate import validate_data

from .conftest import CHART

NAS_VALUES = yaml.safe_load((CHART / "ci" / "enable-nas-values.yaml").read_text())
NAS = NAS_VALUES["experiment"]["nasConfig"]


def _with(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    config: dict[str, Any] = copy.deepcopy(NAS)
    node: Any = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return config


@pytest.mark.parametrize(
    ("path", "value", "where", "wanted"),
    [
        (("graphConfig",), [4], "graphConfig", "a mapping"),
        (("graphConfig", "numLayers"), "4", "graphConfig.numLayers", "a whole number (32-bit)"),
        (("graphConfig", "numLayers"), 2.5, "graphConfig.numLayers", "a whole number (32-bit)"),
        (("graphConfig", "numLayers"), True, "graphConfig.numLayers", "a whole number (32-bit)"),
        (("graphConfig", "numLayers"), 2**31, "graphConfig.numLayers", "a whole number (32-bit)"),
        (("graphConfig", "inputSizes"), 28, "graphConfig.inputSizes", "a list of whole numbers"),
        (("graphConfig", "outputSizes"), [10, "x"], "graphConfig.outputSizes[1]", "a whole number (32-bit)"),
        (("operations",), {"operationType": "convolution"}, "operations", "a list"),
        (("operations", 0), "convolution", "operations[0]", "a mapping"),
        (("operations", 0, "operationType"), 3, "operations[0].operationType", "a string (quote it)"),
        (("operations", 0, "parameters", 1, "feasibleSpace", "list"), [32, 64], "operations[0].parameters[1]"
         ".feasibleSpace.list[0]", "a string (quote it)"),
        (("operations", 0, "parameters", 0, "feasibleSpace"), ["3"], "operations[0].parameters[0].feasibleSpace",
         "a mapping"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("service", ["enas", "darts"])
def test_a_value_katibs_types_cannot_hold_is_refused_by_path(
    path: tuple[str | int, ...], value: Any, where: str, wanted: str, service: str
) -> None:
    findings = list(check_nas_config(_with(path, value), service))
    assert findings == [
        (f"experiment.nasConfig.{where}", f"must be {wanted}: Katib's Experiment type holds nothing else")
    ]


def test_whole_numbers_helm_renders_as_such_are_accepted() -> None:
    """helm reads 4.0 as the number 4 and renders `4`, which Katib's int32 takes."""
    config = _with(("graphConfig", "numLayers"), 4.0)
    config["graphConfig"]["inputSizes"] = [28.0, 28, 1]
    assert list(check_nas_config(config, "enas")) == []


def test_validate_names_the_nas_config_path_in_one_line() -> None:
    data = copy.deepcopy(NAS_VALUES)
    data["experiment"]["nasConfig"]["operations"].append({"operationType": "skip_connection"})
    data["profile"] = "microk8s"
    report = validate_data(data, "nas.yaml")
    lines = [str(p) for p in report.errors if p.path.startswith("experiment.")]
    assert lines == [
        "nas.yaml: experiment.nasConfig.operations[1].parameters: Katib's enas service refuses an operation "
        'without parameters (skip_connection included); add one, such as filter_size, categorical, list ["3"]'
    ]
