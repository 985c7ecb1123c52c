"""An explicit `null` in a values file: validate judges what helm renders. Helm drops a key set to
null (chartutil.CoalesceValues), so the templates render without the chart's default (0, "" or a
failed render) while the models would fill the default back in: validate refuses those nulls with one
line, and accepts exactly the nulls after which helm renders what it renders without them."""

from __future__ import annotations

import copy
import json
import subprocess
from typing import Any

import pytest
import yaml

from generator.validate import chart_defaults, validate_data

from .conftest import ROOT, by_kind, helm_template

BASE = yaml.safe_load((ROOT / "values" / "microk8s.yaml").read_text())
NULL_LINE = "is null, so helm drops the chart's default{} and the templates render without it; delete the line to "
NULL_LINE += "keep the default, or set a value"


def chart_keys(node: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(path, chart default) of every mapping key of values.yaml (list items are not merged by helm)."""
    out = []
    for key, value in node.items():
        out.append(((*prefix, key), value))
        if isinstance(value, dict):
            out += chart_keys(value, (*prefix, key))
    return out


KEYS = chart_keys(chart_defaults())


def with_null(path: tuple[str, ...], remove: bool = False) -> dict[str, Any]:
    """BASE with the key at `path` set to null (or removed)."""
    data: dict[str, Any] = copy.deepcopy(BASE)
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = None
    if remove:
        del node[path[-1]]
    return data


def problems(data: dict[str, Any]) -> list[str]:
    return [str(p) for p in validate_data(data, "values.yaml", ROOT / "values").problems]


def test_base_is_clean() -> None:
    assert problems(BASE) == []


@pytest.mark.parametrize(
    ("path", "default"), [k for k in KEYS if k[1] is not None], ids=[".".join(k[0]) for k in KEYS if k[1] is not None]
)
def test_a_null_over_a_default_is_refused_with_one_line(path: tuple[str, ...], default: Any) -> None:
    shown = "" if isinstance(default, dict | list) and default else f" {json.dumps(default)}"
    assert problems(with_null(path)) == [f"values.yaml: {'.'.join(path)}: {NULL_LINE.format(shown)}"]


@pytest.mark.parametrize(
    "path", [k[0] for k in KEYS if k[1] is None], ids=[".".join(k[0]) for k in KEYS if k[1] is None]
)
def test_a_null_over_a_null_default_renders_as_if_absent(path: tuple[str, ...]) -> None:
    """Validate accepts it, and helm renders exactly what it renders without the line."""
    data = with_null(path)
    assert problems(data) == problems(with_null(path, remove=True)) == []
    assert helm_template(values=data) == helm_template(values=with_null(path, remove=True))


def test_why_nulls_over_defaults_are_refused() -> None:
    """What helm makes of some of them: the models' defaults (12 trials, maximize, 20 epochs) are gone."""
    data = copy.deepcopy(BASE)
    counts = dict.fromkeys(["parallelTrialCount", "maxTrialCount", "maxFailedTrialCount"])
    data["experiment"] = {**data["experiment"], **counts, "objective": {"type": None}}
    data["trial"] = {**data["trial"], "epochs": None}
    (experiment,) = by_kind(helm_template(values=data), "Experiment")
    assert experiment["spec"]["maxTrialCount"] == 0
    assert experiment["spec"]["objective"]["type"] is None
    container = experiment["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    assert "--epochs=0" in container["args"]
    assert sorted(p.split(": ")[1] for p in problems(data)) == [
        "experiment.maxFailedTrialCount",
        "experiment.maxTrialCount",
        "experiment.objective.type",
        "experiment.parallelTrialCount",
        "trial.epochs",
    ]


def test_unknown_keys_set_to_null_follow_helm() -> None:
    """At the top level helm keeps an unknown null key, and its schema refuses it; below the top level
    helm drops every null key, so nothing is left to refuse."""
    top = {**BASE, "experimnt": None}
    assert problems(top) == ["values.yaml: experimnt: unknown key; remove it or fix its spelling"]
    with pytest.raises(subprocess.CalledProcessError) as refused:
        helm_template(values=top, check=False)
    assert "experimnt" in refused.value.stderr
    nested = {**BASE, "experiment": {**BASE["experiment"], "experimnt": None}}
    assert problems(nested) == []
    assert helm_template(values=nested) == helm_template(values=BASE)
