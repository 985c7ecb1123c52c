"""Open Inference Protocol (KServe v2) request and response bodies, and turning tensors into samples.

https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/ : the same requests work
against this server and against a KServe InferenceService serving the same image.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

NUMERIC = {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64"}
DERIVED_OUTPUTS = ("probabilities", "label")
FLOAT32_MAX = float(np.finfo(np.float32).max)
Body = TypeVar("Body", bound=BaseModel)


class BadInput(Exception):
    """A request the server understood but cannot score; becomes a 400 with this message."""


class TooLarge(Exception):
    """A request over one of the cost limits; becomes a 413 with this message."""


class RequestInput(BaseModel):
    name: str = Field(description="Input tensor name (the model's is `input`; any name is accepted for one input).")
    shape: list[int] = Field(description="[N, C, H, W] or [N, C*H*W] (flat feature rows).")
    datatype: str = Field(description="Tensor datatype, e.g. FP32; any numeric type is accepted.")
    parameters: dict[str, Any] | None = None
    data: list[Any] = Field(description="Row-major values, flat or nested.")


class RequestOutput(BaseModel):
    name: str = Field(description="`logits` (the model's output), `probabilities` or `label`.")
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]}]
        }
    )
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1, max_length=1, description="Exactly one input tensor.")
    outputs: list[RequestOutput] | None = Field(
        None,
        max_length=len(DERIVED_OUTPUTS) + 1,
        description="Outputs to return, each at most once; default: the model's.",
    )


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[ResponseOutput]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    # Beyond the protocol: where the model came from.
    trial: str
    parameters: dict[str, Any]
    metrics: dict[str, Any]


class PredictRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"instances": [[0.0] * 64]}]})
    instances: list[list[Any]] = Field(min_length=1, description="Feature rows, each C*H*W numbers (64 for digits).")


class PredictResponse(BaseModel):
    predictions: list[int]
    probabilities: list[list[float]]
    model_name: str
    model_version: str
    trial: str


def to_samples(
    data: list[Any],
    shape: list[int],
    sample_shape: tuple[int, int, int],
    max_batch: int,
    where: str,
    datatype: str = "FP32",
) -> np.ndarray:
    """Validate a tensor and return float32 (N, C, H, W); BadInput names what is wrong and how to fix it."""
    if datatype not in NUMERIC:
        raise BadInput(f"{where}.datatype {datatype!r}: this model takes numbers; use FP32 (or another numeric type)")
    c, h, w = sample_shape
    features = c * h * w
    accepted = f"[N, {c}, {h}, {w}] or [N, {features}]"
    if len(shape) not in (2, 4) or any(d < 1 for d in shape):
        raise BadInput(f"{where}.shape {shape}: this model takes {accepted}")
    if math.prod(shape[1:]) != features or (len(shape) == 4 and tuple(shape[1:]) != sample_shape):
        raise BadInput(f"{where}.shape {shape}: this model takes {accepted}")
    if shape[0] > max_batch:
        raise BadInput(f"{where}.shape {shape}: at most {max_batch} rows per request; split the batch")
    try:
        array = np.asarray(data)
    except ValueError:  # ragged nesting
        raise BadInput(f"{where}.data: rows must all have the same length") from None
    if array.dtype.kind not in "biuf":  # strings, nulls, objects: numpy would coerce "1" silently
        raise BadInput(f"{where}.data: values must be numbers (found {_kind(array)}); send {datatype} numbers")
    if array.size != math.prod(shape):
        raise BadInput(f"{where}.data has {array.size} values; shape {shape} needs {math.prod(shape)}")
    if not np.isfinite(array).all():
        raise BadInput(f"{where}.data contains NaN or infinity; send finite numbers")
    if array.size and float(np.abs(array).max()) > FLOAT32_MAX:
        raise BadInput(f"{where}.data has values beyond float32's range (+-{FLOAT32_MAX:.3g}); send smaller numbers")
    return array.astype(np.float32, copy=False).reshape(shape[0], c, h, w)


def parse_body(body: bytes, model: type[Body], max_items: int) -> Body:
    """Parse and validate a JSON body; TooLarge or BadInput say what is wrong. Blocking: large bodies run
    in a worker thread. pydantic-core's parser lets other threads run while it works (json.loads does not)."""
    if not body:
        raise BadInput("the request body is empty; send a JSON object")
    # Every array item and object member but the first of each follows a comma; the first follows its
    # bracket. So this bounds the values (commas inside strings only over-count) at byte-scan speed,
    # before a parser builds millions of objects.
    items = body.count(b",") + body.count(b"[") + body.count(b"{")
    if items > max_items:
        raise TooLarge(f"the body holds up to {items} JSON values; at most {max_items} (MAX_JSON_ITEMS); split it")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise BadInput(validation_message(exc)) from None


def validation_message(exc: ValidationError) -> str:
    problems = []
    for item in exc.errors():
        loc = ".".join(str(part) for part in item["loc"]) or "body"
        if item["type"] == "json_invalid":
            problems.append(f"the body is not valid JSON ({item.get('ctx', {}).get('error', 'decode error')})")
        else:
            problems.append(f"{loc}: {item['msg']}")
    return "; ".join(problems[:5])


def _kind(array: np.ndarray) -> str:
    return "strings" if array.dtype.kind in "US" else "null or mixed values"
