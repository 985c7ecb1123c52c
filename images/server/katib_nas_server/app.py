"""The FastAPI application: Open Inference Protocol v2, /predict, a digit upload, the drawing page,
Swagger UI at /docs and Prometheus metrics at /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from importlib import resources
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from .holder import ModelHolder
from .images import image_to_sample
from .model import LoadedModel, softmax
from .protocol import (
    DERIVED_OUTPUTS,
    BadInput,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    PredictRequest,
    PredictResponse,
    ResponseOutput,
    TensorMetadata,
    to_samples,
)
from .settings import Settings
from .telemetry import Metrics, TelemetryMiddleware, error_body

VERSION = "0.1.0"


class NotReady(Exception):
    pass


class UnknownModel(Exception):
    pass


def create_app(settings: Settings) -> FastAPI:
    metrics = Metrics()

    def on_swap(old: LoadedModel | None, new: LoadedModel) -> None:
        if old is not None:
            metrics.model_info.remove(settings.model_name, old.version, old.trial)
        metrics.model_info.labels(settings.model_name, new.version, new.trial).set(1)
        metrics.swaps.inc()
        metrics.ready.set(1)

    holder = ModelHolder(settings.model_dir, settings.intra_op_threads, on_swap)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(holder.refresh)  # ready at once when a best model already exists
        watcher = asyncio.create_task(holder.watch(settings.reload_interval))
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    app = FastAPI(
        title="katib-nas inference server",
        version=VERSION,
        summary="Serves the best model of a katib-nas search (Open Inference Protocol v2).",
        lifespan=lifespan,
    )
    app.add_middleware(TelemetryMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    page = (
        resources.files(__package__)
        .joinpath("static/index.html")
        .read_text(encoding="utf-8")
        .replace("__MODEL_NAME__", json.dumps(settings.model_name))
    )

    def model_named(name: str) -> LoadedModel:
        if name != settings.model_name:
            raise UnknownModel(f"model {name!r} not found; this server serves {settings.model_name!r}")
        return ready_model()

    def ready_model() -> LoadedModel:
        model = holder.current  # one read: the whole request uses this model even if a swap happens
        if model is None:
            raise NotReady(holder.waiting_for)
        return model

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/v2", tags=["protocol"])
    async def server_metadata() -> dict[str, Any]:
        return {"name": "katib-nas", "version": VERSION, "extensions": []}

    @app.get("/v2/health/live", tags=["protocol"])
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready", tags=["protocol"], responses={503: {"description": "No model loaded yet"}})
    async def ready() -> JSONResponse:
        if holder.current is None:
            return JSONResponse({"ready": False, "error": holder.waiting_for}, status_code=503)
        return JSONResponse({"ready": True})

    @app.get("/v2/models/{name}/ready", tags=["protocol"])
    async def model_ready(name: str) -> dict[str, Any]:
        model = model_named(name)
        return {"name": name, "ready": True, "version": model.version}

    @app.get("/v2/models/{name}", tags=["protocol"])
    async def model_metadata(name: str) -> ModelMetadata:
        model = model_named(name)
        c, h, w = model.sample_shape
        return ModelMetadata(
            name=name,
            versions=[model.version],
            platform="onnxruntime_onnx",
            inputs=[TensorMetadata(name=model.input_name, datatype="FP32", shape=[-1, c, h, w])],
            outputs=[
                TensorMetadata(name=model.output_name, datatype="FP32", shape=[-1, model.classes]),
                TensorMetadata(name="probabilities", datatype="FP32", shape=[-1, model.classes]),
                TensorMetadata(name="label", datatype="INT64", shape=[-1]),
            ],
            trial=model.trial,
            parameters=model.parameters,
            metrics=model.metrics,
        )

    @app.post("/v2/models/{name}/infer", tags=["protocol"])
    async def infer(name: str, request: InferenceRequest) -> InferenceResponse:
        model = model_named(name)
        tensor = request.inputs[0]
        x = to_samples(tensor.data, tensor.shape, model.sample_shape, settings.max_batch, "inputs[0]", tensor.datatype)
        wanted = [o.name for o in request.outputs] if request.outputs else [model.output_name]
        for output in wanted:
            if output not in (model.output_name, *DERIVED_OUTPUTS):
                raise BadInput(
                    f"outputs: unknown output {output!r}; choose {model.output_name}, probabilities or label"
                )
        # Inline, not in a thread pool: a forward pass of these models takes tens of microseconds,
        # less than handing it to a thread would.
        logits = model.logits(x)
        metrics.rows.inc(len(x))
        outputs = []
        for output in wanted:
            if output == "label":
                outputs.append(
                    ResponseOutput(name=output, shape=[len(x)], datatype="INT64", data=logits.argmax(1).tolist())
                )
            else:
                values = softmax(logits) if output == "probabilities" else logits
                outputs.append(
                    ResponseOutput(name=output, shape=list(values.shape), datatype="FP32", data=values.ravel().tolist())
                )
        return InferenceResponse(model_name=name, model_version=model.version, id=request.id, outputs=outputs)

    def predicted(model: LoadedModel, x: np.ndarray) -> PredictResponse:
        probabilities = softmax(model.logits(x))
        metrics.rows.inc(len(x))
        return PredictResponse(
            predictions=probabilities.argmax(1).tolist(),
            probabilities=probabilities.round(6).tolist(),
            model_name=settings.model_name,
            model_version=model.version,
            trial=model.trial,
        )

    @app.post("/predict", tags=["simple"])
    async def predict(request: PredictRequest) -> PredictResponse:
        """Feature rows in, predicted classes and class probabilities out."""
        model = ready_model()
        rows = request.instances
        shape = [len(rows), len(rows[0])]
        if any(len(row) != shape[1] for row in rows):
            raise BadInput("instances: rows must all have the same length")
        return predicted(model, to_samples(rows, shape, model.sample_shape, settings.max_batch, "instances"))

    @app.post("/predict/image", tags=["simple"])
    async def predict_image(
        file: Annotated[UploadFile, File(description="PNG or JPEG of one digit")],
    ) -> PredictResponse:
        """A picture of one digit (any size; dark on light or light on dark)."""
        model = ready_model()
        return predicted(model, image_to_sample(await file.read(), model.sample_shape))

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    install_error_handlers(app, settings.model_name)
    app.state.holder = holder
    return app


def install_error_handlers(app: FastAPI, model_name: str) -> None:
    """Every error is {"error": "..."}; a mistake in the request is a 4xx, never a 500."""

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse(error_body(message), status_code=status)

    @app.exception_handler(BadInput)
    async def bad_input(_: Request, exc: BadInput) -> JSONResponse:
        return error(400, str(exc))

    @app.exception_handler(UnknownModel)
    async def unknown_model(_: Request, exc: UnknownModel) -> JSONResponse:
        return error(404, str(exc))

    @app.exception_handler(NotReady)
    async def not_ready(_: Request, exc: NotReady) -> JSONResponse:
        return error(503, f"not ready: {exc}")

    @app.exception_handler(StarletteHTTPException)  # FastAPI's HTTPException, 404 and 405 alike
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        name = request.path_params.get("name")
        if name is not None and name != model_name:  # the wrong model is the first thing to fix
            return error(404, f"model {name!r} not found; this server serves {model_name!r}")
        content_type = request.headers.get("content-type", "")
        expects = "multipart/form-data" if request.url.path.endswith("/image") else "application/json"
        if not content_type.startswith(expects) and not content_type.endswith("+json"):
            return error(415, f"Content-Type {content_type or '(none)'} is not accepted here; send {expects}")
        problems = []
        for item in exc.errors():
            loc = ".".join(str(part) for part in item["loc"] if part != "body") or "body"
            if item["type"] == "missing" and loc == "body":
                problems.append("the request body is empty; send a JSON object")
            elif item["type"] == "json_invalid":
                problems.append(f"the body is not valid JSON ({item.get('ctx', {}).get('error', 'decode error')})")
            else:
                problems.append(f"{loc}: {item['msg']}")
        return error(400, "; ".join(problems[:5]))
