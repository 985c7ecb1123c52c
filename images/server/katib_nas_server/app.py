"""The FastAPI application: Open Inference Protocol v2, /predict, a digit upload, the drawing page,
Swagger UI at /docs (served from the image: no CDN) and Prometheus metrics at /metrics.

JSON bodies are read as bytes and parsed by the routes, not by FastAPI: a large body is parsed,
validated, scored and serialized in a worker thread, so the event loop (and the liveness probe)
never waits on it; a small one stays on the loop, where it costs less than a thread hand-off."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from importlib import resources
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .holder import ModelHolder
from .images import image_to_sample
from .limits import INLINE_BODY_BYTES, AdmissionMiddleware
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
    TooLarge,
    parse_body,
    to_samples,
)
from .settings import Settings
from .telemetry import Metrics, TelemetryMiddleware, error_body

VERSION = "0.1.0"


class NotReady(Exception):
    pass


class UnknownModel(Exception):
    pass


class ErrorBody(BaseModel):
    error: str


ERRORS = {
    400: "The request is malformed or cannot be scored; the message says what to fix.",
    404: "No such model (or route).",
    408: "The request body did not arrive within READ_TIMEOUT.",
    413: "The body is over MAX_BODY_BYTES or holds more than MAX_JSON_ITEMS values.",
    415: "Wrong Content-Type.",
    503: "No model loaded yet, or too many large requests in line (then Retry-After is set).",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error answers a route really gives, each `{"error": "..."}`."""
    return {code: {"model": ErrorBody, "description": ERRORS[code]} for code in codes}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI request body of a route that parses its JSON itself (see the module docstring)."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


REQUEST_MODELS: tuple[type[BaseModel], ...] = (InferenceRequest, PredictRequest)


def create_app(settings: Settings) -> FastAPI:
    metrics = Metrics()

    def on_swap(old: LoadedModel | None, new: LoadedModel) -> None:
        if old is not None:
            metrics.model_info.remove(settings.model_name, old.version, old.trial)
        metrics.model_info.labels(settings.model_name, new.version, new.trial).set(1)
        metrics.swaps.inc()
        metrics.ready.set(1)
        metrics.model_published.set(new.published_at or 0)

    holder = ModelHolder(settings.model_dir, settings.intra_op_threads, on_swap)
    metrics.best_published.set_function(lambda: holder.pointer_published_at or 0)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(holder.refresh)  # ready at once when a best model already exists
        watcher = app.state.watcher = asyncio.create_task(holder.watch(settings.reload_interval))
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    def watcher_stopped() -> str | None:
        watcher: asyncio.Task[None] | None = app.state.watcher
        if watcher is not None and watcher.done():
            return "the model watcher has stopped (see the server log); restart the server"
        return None

    app = FastAPIOffline(  # FastAPI with Swagger UI's files served from the fastapi-offline package
        title="katib-nas inference server",
        version=VERSION,
        summary="Serves the best model of a katib-nas search (Open Inference Protocol v2).",
        lifespan=lifespan,
        redoc_url=None,
    )
    base_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        schema = base_openapi()
        _, definitions = models_json_schema(
            [(model, "validation") for model in REQUEST_MODELS], ref_template="#/components/schemas/{model}"
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(definitions["$defs"])
        # FastAPI documents 422 for any parameter; this server answers validation errors with 400/415.
        for operations in schema["paths"].values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.watcher = None  # the lifespan's task that follows best.json
    app.add_middleware(
        AdmissionMiddleware,
        max_body_bytes=settings.max_body_bytes,
        read_timeout=settings.read_timeout,
        max_concurrent=settings.max_concurrent_requests,
        max_queued=settings.max_queued_requests,
    )
    app.add_middleware(TelemetryMiddleware, metrics=metrics)  # outermost: counts the admission's answers too
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

    @app.get("/v2/health/live", tags=["protocol"], responses={503: {"description": "The model watcher has stopped"}})
    async def live() -> JSONResponse:
        if stopped := watcher_stopped():  # only a bug ends it: a restart is the cure
            return JSONResponse({"live": False, "error": stopped}, status_code=503)
        return JSONResponse({"live": True})

    @app.get(
        "/v2/health/ready",
        tags=["protocol"],
        responses={503: {"description": "No model loaded yet (the reason is given), or the model watcher stopped"}},
    )
    async def ready() -> JSONResponse:
        if stopped := watcher_stopped():
            return JSONResponse({"ready": False, "error": stopped}, status_code=503)
        if holder.current is None:
            return JSONResponse({"ready": False, "error": holder.waiting_for}, status_code=503)
        return JSONResponse({"ready": True})

    @app.get("/v2/models/{name}/ready", tags=["protocol"], responses=errors(404, 503))
    async def model_ready(name: str) -> dict[str, Any]:
        model = model_named(name)
        return {"name": name, "ready": True, "version": model.version}

    @app.get("/v2/models/{name}", tags=["protocol"], responses=errors(404, 503))
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

    async def json_bytes(request: Request) -> bytes:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            shown = request.headers.get("content-type") or "(none)"
            raise StarletteHTTPException(415, f"Content-Type {shown} is not accepted here; send application/json")
        return await request.body()

    async def answer(work: Callable[[], BaseModel], size: int) -> Response:
        """Run `work` on the loop for a small body, in a worker thread for a large one; JSON bytes out."""
        result = await asyncio.to_thread(work) if size > INLINE_BODY_BYTES else work()
        return Response(result.model_dump_json(), media_type="application/json")

    def scored(model: LoadedModel, x: np.ndarray) -> np.ndarray:
        logits = model.logits(x)
        if not np.isfinite(logits).all():  # finite float32 inputs can still overflow inside the model
            raise BadInput("the model's output overflows float32 for these inputs; send values scaled as in training")
        metrics.rows.inc(len(x))
        return logits

    @app.post(
        "/v2/models/{name}/infer",
        tags=["protocol"],
        response_model=InferenceResponse,
        responses=errors(400, 404, 408, 413, 415, 503),
        openapi_extra=json_body(InferenceRequest),
    )
    async def infer(name: str, request: Request) -> Response:
        """One input tensor in; `logits`, `probabilities` and/or `label` out (each at most once)."""
        model = model_named(name)
        body = await json_bytes(request)

        def work() -> InferenceResponse:
            parsed = parse_body(body, InferenceRequest, settings.max_json_items)
            tensor = parsed.inputs[0]
            x = to_samples(
                tensor.data, tensor.shape, model.sample_shape, settings.max_batch, "inputs[0]", tensor.datatype
            )
            wanted = [o.name for o in parsed.outputs] if parsed.outputs else [model.output_name]
            for output in wanted:
                if output not in (model.output_name, *DERIVED_OUTPUTS):
                    raise BadInput(
                        f"outputs: unknown output {output!r}; choose {model.output_name}, probabilities or label"
                    )
            if len(set(wanted)) != len(wanted):
                raise BadInput("outputs: name each output at most once")
            logits = scored(model, x)
            outputs = []
            for output in wanted:
                if output == "label":
                    labels = logits.argmax(1).tolist()
                    outputs.append(ResponseOutput(name=output, shape=[len(x)], datatype="INT64", data=labels))
                else:
                    values = softmax(logits) if output == "probabilities" else logits
                    outputs.append(
                        ResponseOutput(
                            name=output, shape=list(values.shape), datatype="FP32", data=values.ravel().tolist()
                        )
                    )
            return InferenceResponse(model_name=name, model_version=model.version, id=parsed.id, outputs=outputs)

        return await answer(work, len(body))

    def predicted(model: LoadedModel, x: np.ndarray) -> PredictResponse:
        probabilities = softmax(scored(model, x))
        return PredictResponse(
            predictions=probabilities.argmax(1).tolist(),
            probabilities=probabilities.round(6).tolist(),
            model_name=settings.model_name,
            model_version=model.version,
            trial=model.trial,
        )

    @app.post(
        "/predict",
        tags=["simple"],
        response_model=PredictResponse,
        responses=errors(400, 408, 413, 415, 503),
        openapi_extra=json_body(PredictRequest),
    )
    async def predict(request: Request) -> Response:
        """Feature rows in, predicted classes and class probabilities out."""
        model = ready_model()
        body = await json_bytes(request)

        def work() -> PredictResponse:
            rows = parse_body(body, PredictRequest, settings.max_json_items).instances
            shape = [len(rows), len(rows[0])]
            if any(len(row) != shape[1] for row in rows):
                raise BadInput("instances: rows must all have the same length")
            return predicted(model, to_samples(rows, shape, model.sample_shape, settings.max_batch, "instances"))

        return await answer(work, len(body))

    @app.post("/predict/image", tags=["simple"], responses=errors(400, 408, 413, 415, 503))
    async def predict_image(
        file: Annotated[UploadFile, File(description="PNG or JPEG of one digit")],
    ) -> PredictResponse:
        """A picture of one digit (any size; dark on light or light on dark). Decoded in a worker thread."""
        model = ready_model()
        data = await file.read()
        sample = await asyncio.to_thread(image_to_sample, data, model.sample_shape, settings.max_image_pixels)
        return predicted(model, sample)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    install_error_handlers(app)
    app.state.holder = holder
    return app


def install_error_handlers(app: FastAPI) -> None:
    """Every error is {"error": "..."}; a mistake in the request is a 4xx, never a 500."""

    def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
        return JSONResponse(error_body(message), status_code=status, headers=headers)

    @app.exception_handler(BadInput)
    async def bad_input(_: Request, exc: BadInput) -> JSONResponse:
        return error(400, str(exc))

    @app.exception_handler(ClientDisconnect)  # gone mid-body: nobody reads the answer, nothing to log
    async def gone(_: Request, exc: ClientDisconnect) -> JSONResponse:
        return error(400, "the client disconnected before sending the whole body")

    @app.exception_handler(TooLarge)
    async def too_large(_: Request, exc: TooLarge) -> JSONResponse:
        return error(413, str(exc))

    @app.exception_handler(UnknownModel)
    async def unknown_model(_: Request, exc: UnknownModel) -> JSONResponse:
        return error(404, str(exc))

    @app.exception_handler(NotReady)
    async def not_ready(_: Request, exc: NotReady) -> JSONResponse:
        return error(503, f"not ready: {exc}")

    @app.exception_handler(StarletteHTTPException)  # FastAPI's HTTPException, 404 and 405 alike
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), exc.headers)  # 405 keeps Allow, 408 Connection: close

    @app.exception_handler(RequestValidationError)  # the upload's form: the JSON routes parse their own bodies
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            shown = content_type or "(none)"
            return error(415, f"Content-Type {shown} is not accepted here; send multipart/form-data")
        problems = []
        for item in exc.errors():
            loc = ".".join(str(part) for part in item["loc"] if part != "body") or "body"
            problems.append(f"{loc}: {item['msg']}")
        return error(400, "; ".join(problems[:5]))
