"""Prometheus metrics and the ASGI middleware that records them.

Plain ASGI rather than Starlette's BaseHTTPMiddleware: it adds microseconds, not a task per request,
which matters at thousands of single-row requests a second.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The *_created series double the output and no dashboard reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "katib_nas_requests",
            "HTTP requests by route and status code.",
            ["route", "method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "katib_nas_request_duration_seconds",
            "Request latency by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rows = Counter("katib_nas_inference_rows", "Samples scored.", registry=self.registry)
        self.model_info = Gauge(
            "katib_nas_model_info",
            "The model being served (value 1).",
            ["model", "version", "trial"],
            registry=self.registry,
        )
        self.swaps = Counter("katib_nas_model_swaps", "Models loaded and swapped in.", registry=self.registry)
        self.ready = Gauge("katib_nas_model_ready", "1 when a model is loaded.", registry=self.registry)
        # The two times a stale-model alert compares (0 until known, and when MODEL_DIR is one trial record).
        self.model_published = Gauge(
            "katib_nas_model_published_timestamp_seconds",
            "When best.json named the model being served (Unix time).",
            registry=self.registry,
        )
        self.best_published = Gauge(
            "katib_nas_best_published_timestamp_seconds",
            "When the model best.json names now was published (Unix time), read at each check of best.json.",
            registry=self.registry,
        )


class TelemetryMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(path, scope["method"], str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)


def error_body(message: str) -> dict[str, Any]:
    return {"error": message}
