"""An Experiment's nasConfig as Katib's enas and darts suggestion services judge it.

The chart passes experiment.nasConfig through as written. Katib decodes it into its Go types
(experiments/v1beta1 NasConfig: numLayers and the sizes int32, every feasibleSpace field a string;
a value of another type fails the decoding, so it is refused here by path) and its suggestion
controller hands it to the service, whose ValidateAlgorithmSettings checks the graph (enas only:
pkg/suggestion/v1beta1/nas/enas/service.py) and the operations (both services:
pkg/suggestion/v1beta1/nas/common/validation.py). tests/test_suggestion_services.py runs both
services' own code on generated nasConfigs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .service_numbers import py_float

# (value path, message)
Finding = tuple[str, str]

PATH = "experiment.nasConfig"
INT32 = (-(2**31), 2**31 - 1)
# Katib's parameter types; any other string becomes UNKNOWN_TYPE in the gRPC request.
PARAMETER_TYPES = ("categorical", "discrete", "int", "double")


class _WrongType(Exception):
    def __init__(self, path: str, wanted: str) -> None:
        super().__init__(path, wanted)
        self.path, self.wanted = path, wanted


@dataclass
class NasParameter:
    name: str = ""
    parameter_type: str = ""
    min: str = ""
    max: str = ""
    step: str = ""
    values: list[str] = field(default_factory=list)


@dataclass
class NasOperation:
    operation_type: str = ""
    parameters: list[NasParameter] = field(default_factory=list)


@dataclass
class NasConfig:
    num_layers: int = 0
    input_sizes: list[int] = field(default_factory=list)
    output_sizes: list[int] = field(default_factory=list)
    operations: list[NasOperation] = field(default_factory=list)


# --- decoding as Go's encoding/json fills Katib's types (null leaves the zero value) -----------


def _get(node: dict[str, Any], key: str, path: str, kind: type, wanted: str) -> Any:
    value = node.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise _WrongType(f"{path}.{key}", wanted)
    return value


def _int32(value: Any, path: str) -> int:
    # helm reads 3.0 as the number 3 and renders it so; Go then decodes it into the int32.
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or not INT32[0] <= value <= INT32[1]:
        raise _WrongType(path, "a whole number (32-bit)")
    return int(value)


def _int32s(node: dict[str, Any], key: str, path: str) -> list[int]:
    values = _get(node, key, path, list, "a list of whole numbers") or []
    return [_int32(v, f"{path}.{key}[{i}]") for i, v in enumerate(values)]


def _string(node: dict[str, Any], key: str, path: str) -> str:
    return _get(node, key, path, str, "a string (quote it)") or ""


def _mappings(node: dict[str, Any], key: str, path: str) -> list[tuple[str, dict[str, Any]]]:
    items = _get(node, key, path, list, "a list") or []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise _WrongType(f"{path}.{key}[{i}]", "a mapping")
    return [(f"{path}.{key}[{i}]", item) for i, item in enumerate(items)]


def _parameter(node: dict[str, Any], path: str) -> NasParameter:
    space = _get(node, "feasibleSpace", path, dict, "a mapping") or {}
    space_path = f"{path}.feasibleSpace"
    values = _get(space, "list", space_path, list, "a list of strings") or []
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise _WrongType(f"{space_path}.list[{i}]", "a string (quote it)")
    return NasParameter(
        name=_string(node, "name", path),
        parameter_type=_string(node, "parameterType", path),
        min=_string(space, "min", space_path),
        max=_string(space, "max", space_path),
        step=_string(space, "step", space_path),
        values=values,
    )


def decode(raw: dict[str, Any]) -> NasConfig:
    """The nasConfig as Katib's Go types hold it; raises _WrongType naming the first value they cannot hold."""
    graph = _get(raw, "graphConfig", PATH, dict, "a mapping") or {}
    graph_path = f"{PATH}.graphConfig"
    layers = graph.get("numLayers")
    return NasConfig(
        num_layers=0 if layers is None else _int32(layers, f"{graph_path}.numLayers"),
        input_sizes=_int32s(graph, "inputSizes", graph_path),
        output_sizes=_int32s(graph, "outputSizes", graph_path),
        operations=[
            NasOperation(
                operation_type=_string(op, "operationType", op_path),
                parameters=[_parameter(p, p_path) for p_path, p in _mappings(op, "parameters", op_path)],
            )
            for op_path, op in _mappings(raw, "operations", PATH)
        ],
    )


# --- the services' checks -------------------------------------------------------------------


def check_nas_config(raw: dict[str, Any], service: str) -> Iterator[Finding]:
    """Findings for the nasConfig as Katib's `service` (enas or darts) judges it."""
    try:
        config = decode(raw)
    except _WrongType as wrong:
        yield (wrong.path, f"must be {wrong.wanted}: Katib's Experiment type holds nothing else")
        return
    who = f"Katib's {service} service"
    if service == "enas":
        graph = f"{PATH}.graphConfig"
        if not config.input_sizes:
            yield (f"{graph}.inputSizes", f"{who} needs the input's sizes (such as [28, 28, 1]); add them")
        if not config.output_sizes:
            yield (f"{graph}.outputSizes", f"{who} needs the output's sizes (such as [10]); add them")
        if config.num_layers == 0:
            yield (f"{graph}.numLayers", f"{who} needs the number of layers, other than 0; set it")
    for i, op in enumerate(config.operations):
        yield from _operation(op, f"{PATH}.operations[{i}]", who)


def _operation(op: NasOperation, path: str, who: str) -> Iterator[Finding]:
    if not op.operation_type:
        yield (f"{path}.operationType", f"{who} needs an operationType (such as convolution); add it")
    if not op.parameters:
        yield (
            f"{path}.parameters",
            f"{who} refuses an operation without parameters (skip_connection included); add one, such as "
            'filter_size, categorical, list ["3"]',
        )
    for j, p in enumerate(op.parameters):
        p_path = f"{path}.parameters[{j}]"
        if not p.name:
            yield (f"{p_path}.name", f"{who} needs each parameter's name; add it")
        if p.parameter_type not in PARAMETER_TYPES:
            yield (f"{p_path}.parameterType", f"{who} needs one of {', '.join(PARAMETER_TYPES)}; set it")
        elif p.parameter_type in ("categorical", "discrete"):
            if not p.values:
                yield (f"{p_path}.feasibleSpace.list", f"{who} needs the {p.parameter_type} values; add them")
        elif not p.min and not p.max:
            yield (f"{p_path}.feasibleSpace", f"{who} needs a min or a max for {p.parameter_type}; add them")
        elif p.parameter_type == "double":
            step = py_float(p.step)
            if step is None or step <= 0:
                yield (
                    f"{p_path}.feasibleSpace.step",
                    f"{who} needs a step greater than 0 for double, not {p.step!r}; set one",
                )
