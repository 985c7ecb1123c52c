"""The inference server: a real uvicorn process on loopback serving real trainer-exported ONNX models."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from katib_nas_contract.best import Best, publish
from katib_nas_contract.datasets import load_digits

from .conftest import Server, copy_records, server_image_env, serving

NAME = "katib-nas"
INFER = f"/v2/models/{NAME}/infer"


@pytest.fixture(scope="module")
def server(digits_records: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("server")
    with serving(copy_records(digits_records, tmp / "exp", "mlp-wide"), tmp / "server.log") as running:
        yield running


@pytest.fixture(scope="module")
def digits_test() -> tuple[np.ndarray, np.ndarray]:
    arrays = load_digits()
    return arrays.x_test, arrays.y_test


def infer_body(x: np.ndarray, **extra: Any) -> dict[str, Any]:
    return {
        "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}],
        **extra,
    }


def test_metadata_names_the_trial_its_parameters_and_metrics(server: Server, digits_records: Path) -> None:
    with server.client() as client:
        meta = client.get(f"/v2/models/{NAME}").json()
    record = digits_records / "mlp-wide"
    assert meta["trial"] == "mlp-wide" and meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert meta["outputs"][0] == {"name": "logits", "datatype": "FP32", "shape": [-1, 10]}
    assert meta["parameters"] == json.loads((record / "params.json").read_text())["params"]
    assert meta["metrics"] == json.loads((record / "metrics.json").read_text())


def test_infer_matches_onnxruntime_for_nested_flat_and_integer_tensors(
    server: Server, digits_records: Path, digits_test: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = digits_test[0][:32], digits_test[1][:32]
    session = ort.InferenceSession(str(digits_records / "mlp-wide" / "model.onnx"))
    expected = session.run(None, {"input": x})[0]
    nested = {"inputs": [{"name": "input", "shape": [32, 1, 8, 8], "datatype": "FP32", "data": x.tolist()}], "id": "r1"}
    flat = infer_body(x.reshape(32, 64), outputs=[{"name": "logits"}, {"name": "probabilities"}, {"name": "label"}])
    with server.client() as client:
        answers = [client.post(INFER, json=body) for body in (nested, flat)]
        whole = np.rint(x[:2] * 16).astype(int)  # digits are sixteenths: integer pixels scaled back
        as_int = client.post(INFER, json=infer_body(whole.astype(np.float32) / 16))
    for answer in answers:
        assert answer.status_code == 200, answer.text
    first, second = answers[0].json(), answers[1].json()
    assert first["id"] == "r1" and first["model_name"] == NAME and first["model_version"].startswith("mlp-wide@")
    logits = np.asarray(first["outputs"][0]["data"], dtype=np.float32).reshape(first["outputs"][0]["shape"])
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    names = [o["name"] for o in second["outputs"]]
    assert names == ["logits", "probabilities", "label"]
    probs = np.asarray(second["outputs"][1]["data"]).reshape(32, 10)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    labels = second["outputs"][2]["data"]
    assert second["outputs"][2]["datatype"] == "INT64" and labels == expected.argmax(1).tolist()
    assert (np.asarray(labels) == y).mean() > 0.8
    assert as_int.status_code == 200


def test_predict_takes_feature_rows(server: Server, digits_test: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = digits_test
    with server.client() as client:
        answer = client.post("/predict", json={"instances": x[:50].reshape(50, 64).tolist()})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["trial"] == "mlp-wide" and len(body["probabilities"]) == 50
    assert (np.asarray(body["predictions"]) == y[:50]).mean() > 0.8


def png(sample: np.ndarray, scale: int = 8, dark_on_light: bool = True) -> bytes:
    """A digit as a person would photograph it: bigger, dark ink on light paper."""
    pixels = np.rint(sample.reshape(8, 8) * 255).astype(np.uint8)
    if dark_on_light:
        pixels = 255 - pixels
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").resize((8 * scale, 8 * scale), Image.Resampling.NEAREST).save(buffer, "PNG")
    return buffer.getvalue()


def test_an_uploaded_picture_gets_the_same_answer_as_its_pixels(
    server: Server, digits_test: tuple[np.ndarray, np.ndarray]
) -> None:
    x = digits_test[0][:5]
    with server.client() as client:
        rows = client.post("/predict", json={"instances": x.reshape(5, 64).tolist()}).json()
        for i in range(5):
            for dark_on_light in (True, False):
                answer = client.post(
                    "/predict/image", files={"file": ("digit.png", png(x[i], 8, dark_on_light), "image/png")}
                )
                assert answer.status_code == 200, answer.text
                assert answer.json()["predictions"] == [rows["predictions"][i]]
                np.testing.assert_allclose(answer.json()["probabilities"][0], rows["probabilities"][i], atol=0.02)


def _oversize() -> bytes:
    return b'{"instances": [[' + b"0," * (5 * 1024 * 1024) + b"0]]}"


BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int, str]] = [
    # (id, path, httpx request kwargs, status, fragment of the error message)
    ("empty body", INFER, {"content": b"", "headers": {"content-type": "application/json"}}, 400, "body is empty"),
    (
        "not json",
        INFER,
        {"content": b"{inputs", "headers": {"content-type": "application/json"}},
        400,
        "not valid JSON",
    ),
    ("no inputs", INFER, {"json": {"outputs": []}}, 400, "inputs: Field required"),
    (
        "two inputs",
        INFER,
        {"json": {"inputs": [{"name": "a", "shape": [1, 64], "datatype": "FP32", "data": [0] * 64}] * 2}},
        400,
        "at most 1 item",
    ),
    (
        "wrong shape",
        INFER,
        {"json": {"inputs": [{"name": "input", "shape": [1, 28, 28], "datatype": "FP32", "data": [0] * 784}]}},
        400,
        "this model takes [N, 1, 8, 8] or [N, 64]",
    ),
    (
        "count mismatch",
        INFER,
        {"json": {"inputs": [{"name": "input", "shape": [2, 64], "datatype": "FP32", "data": [0] * 64}]}},
        400,
        "has 64 values; shape [2, 64] needs 128",
    ),
    (
        "ragged rows",
        INFER,
        {"json": {"inputs": [{"name": "input", "shape": [2, 64], "datatype": "FP32", "data": [[0] * 64, [0] * 63]}]}},
        400,
        "same length",
    ),
    (
        "strings",
        INFER,
        {"json": {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": ["1"] * 64}]}},
        400,
        "values must be numbers (found strings)",
    ),
    (
        "nulls",
        INFER,
        {"json": {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [None] * 64}]}},
        400,
        "values must be numbers",
    ),
    (
        "BYTES dtype",
        INFER,
        {"json": {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "BYTES", "data": [0] * 64}]}},
        400,
        "datatype 'BYTES'",
    ),
    (
        "NaN",
        INFER,
        {
            "content": b'{"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [NaN'
            + b", 0" * 63
            + b"]}]}",
            "headers": {"content-type": "application/json"},
        },
        400,
        "NaN or infinity",
    ),
    (
        "Infinity",
        "/predict",
        {
            "content": b'{"instances": [[Infinity' + b", 0" * 63 + b"]]}",
            "headers": {"content-type": "application/json"},
        },
        400,
        "NaN or infinity",
    ),
    (
        "too many rows",
        INFER,
        {"json": {"inputs": [{"name": "input", "shape": [5000, 64], "datatype": "FP32", "data": [0] * 5000 * 64}]}},
        400,
        "at most 4096 rows",
    ),
    (
        "unknown output",
        INFER,
        {
            "json": {
                "inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0] * 64}],
                "outputs": [{"name": "embedding"}],
            }
        },
        400,
        "unknown output 'embedding'",
    ),
    (
        "unknown model",
        "/v2/models/resnet/infer",
        {"json": {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0] * 64}]}},
        404,
        "model 'resnet' not found; this server serves 'katib-nas'",
    ),
    ("unknown model, bad body", "/v2/models/resnet/infer", {"json": {}}, 404, "model 'resnet' not found"),
    ("text/plain", INFER, {"content": b"{}", "headers": {"content-type": "text/plain"}}, 415, "send application/json"),
    ("no content type", "/predict", {"content": b'{"instances": [[0]]}'}, 415, "send application/json"),
    (
        "oversize body",
        "/predict",
        {"content": _oversize(), "headers": {"content-type": "application/json"}},
        413,
        "over the 8388608-byte limit",
    ),
    ("empty rows", "/predict", {"json": {"instances": []}}, 400, "instances: List should have at least 1 item"),
    ("short rows", "/predict", {"json": {"instances": [[0.5] * 10]}}, 400, "this model takes [N, 1, 8, 8] or [N, 64]"),
    (
        "not an image",
        "/predict/image",
        {"files": {"file": ("digit.png", b"GIF? no, text", "image/png")}},
        400,
        "not a PNG or JPEG picture",
    ),
    (
        "empty image",
        "/predict/image",
        {"files": {"file": ("digit.png", b"", "image/png")}},
        400,
        "uploaded file is empty",
    ),
    ("json to image", "/predict/image", {"json": {"instances": [[0]]}}, 415, "send multipart/form-data"),
    (
        "no file field",
        "/predict/image",
        {"files": {"picture": ("digit.png", b"x", "image/png")}},
        400,
        "file: Field required",
    ),
]


@pytest.mark.parametrize(
    ("path", "request_kwargs", "status", "message"), [c[1:] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS]
)
def test_bad_input_is_a_clear_4xx_and_the_server_keeps_serving(
    server: Server, path: str, request_kwargs: dict[str, Any], status: int, message: str
) -> None:
    with server.client() as client:
        answer = client.post(path, **request_kwargs)
        assert answer.status_code == status, answer.text
        assert message in answer.json()["error"]
        assert client.post("/predict", json={"instances": [[0.5] * 64]}).status_code == 200


def test_unknown_routes_and_methods_get_json_errors(server: Server) -> None:
    with server.client() as client:
        assert client.get("/v2/models/resnet").json() == {
            "error": "model 'resnet' not found; this server serves 'katib-nas'"
        }
        assert client.get("/nothing").status_code == 404
        assert client.delete("/predict").json() == {"error": "Method Not Allowed"}


def metric_samples(client: httpx.Client) -> dict[str, float]:
    """/metrics as {series: value}."""
    lines = client.get("/metrics").text.splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if line and line[0] != "#"}


def test_metrics_count_requests_latency_rows_and_the_model_version(server: Server) -> None:
    with server.client() as client:
        for _ in range(3):
            client.post("/predict", json={"instances": [[0.5] * 64] * 4})
        client.post("/predict", json={"instances": []})
        samples = metric_samples(client)
    assert samples['katib_nas_requests_total{code="200",method="POST",route="/predict"}'] >= 3
    assert samples['katib_nas_requests_total{code="400",method="POST",route="/predict"}'] >= 1
    assert samples['katib_nas_request_duration_seconds_count{route="/predict"}'] >= 4
    assert samples['katib_nas_request_duration_seconds_bucket{le="+Inf",route="/predict"}'] >= 4
    assert samples["katib_nas_inference_rows_total"] >= 12
    info = [k for k in samples if k.startswith("katib_nas_model_info{")]
    assert len(info) == 1 and 'trial="mlp-wide"' in info[0] and 'version="mlp-wide@' in info[0]
    assert samples["katib_nas_model_ready"] == 1


def test_swagger_ui_and_openapi_describe_the_routes(server: Server) -> None:
    with server.client() as client:
        assert "swagger-ui" in client.get("/docs").text
        paths = client.get("/openapi.json").json()["paths"]
    assert {"/v2/models/{name}/infer", "/predict", "/predict/image", "/v2/health/ready"} <= set(paths)


def test_not_ready_until_a_best_model_is_published(digits_records: Path, tmp_path: Path) -> None:
    experiment = copy_records(digits_records, tmp_path / "exp", best=None)
    with serving(experiment, tmp_path / "server.log") as server, server.client() as client:
        assert client.get("/v2/health/live").status_code == 200
        ready = client.get("/v2/health/ready")
        assert ready.status_code == 503 and "no best.json" in ready.json()["error"]
        answer = client.post("/predict", json={"instances": [[0.5] * 64]})
        assert answer.status_code == 503 and answer.json()["error"].startswith("not ready: no best.json")
        publish(experiment, Best("mlp-small", "accuracy", 0.9, "records"))
        deadline = time.monotonic() + 10
        while client.get("/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline, server.logs()
            time.sleep(0.1)
        assert client.get(f"/v2/models/{NAME}").json()["trial"] == "mlp-small"


def test_a_moved_pointer_swaps_the_model_under_load_without_a_failed_request(
    digits_records: Path, tmp_path: Path
) -> None:
    experiment = copy_records(digits_records, tmp_path / "exp", best="mlp-small")
    body = {"instances": [[0.5] * 64] * 8}
    statuses: Counter[int] = Counter()
    versions: list[str] = []
    answered: list[tuple[float, float, str]] = []  # (sent, answered, trial) of each 200
    stop = threading.Event()

    def hammer(url: str) -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            while not stop.is_set():
                sent = time.monotonic()
                answer = client.post("/predict", json=body)
                statuses[answer.status_code] += 1
                if answer.status_code == 200:
                    versions.append(answer.json()["trial"])
                    answered.append((sent, time.monotonic(), versions[-1]))

    with serving(experiment, tmp_path / "server.log") as server:
        workers = [threading.Thread(target=hammer, args=(server.url,)) for _ in range(4)]
        for worker in workers:
            worker.start()

        def answers(at_least: int, what: str) -> None:  # counts, not seconds: a loaded machine is slower
            deadline = time.monotonic() + 60
            while len(versions) < at_least:
                assert time.monotonic() < deadline, f"fewer than {at_least} answers {what}: {statuses}"
                time.sleep(0.05)

        answers(50, "from the first model")
        publish(experiment, Best("mlp-wide", "accuracy", 0.95, "records"))
        deadline = time.monotonic() + 15
        while not versions or versions[-1] != "mlp-wide":
            assert time.monotonic() < deadline, server.logs()
            time.sleep(0.05)
        answers(len(versions) + 50, "after the swap")
        stop.set()
        for worker in workers:
            worker.join()
        with server.client() as client:
            metrics = client.get("/metrics").text
    assert set(statuses) == {200}, statuses
    # A request keeps the model it started with, so with four clients an old model's answer may come
    # back after a new one's; but once the new model has answered, every request sent later gets it.
    first_new = min(done for _, done, trial in answered if trial == "mlp-wide")
    assert {trial for sent, _, trial in answered if sent > first_new} == {"mlp-wide"}
    assert {trial for _, done, trial in answered if done < first_new} == {"mlp-small"}
    assert "katib_nas_model_swaps_total 2.0" in metrics


def test_a_model_that_fails_to_load_leaves_the_old_one_serving(digits_records: Path, tmp_path: Path) -> None:
    experiment = copy_records(digits_records, tmp_path / "exp", best="mlp-small")
    broken = experiment / "mlp-broken"
    broken.mkdir()
    for name in ("COMPLETE", "params.json"):
        (broken / name).write_text("{}")
    (broken / "metrics.json").write_text('{"accuracy": 0.99}')
    (broken / "model.onnx").write_bytes(b"not an onnx file")
    served_at = json.loads((experiment / "best.json").read_text())["published_at"]
    with serving(experiment, tmp_path / "server.log") as server, server.client() as client:
        fresh = metric_samples(client)
        publish(experiment, Best("mlp-broken", "accuracy", 0.99, "records"))
        deadline = time.monotonic() + 10
        while "cannot load" not in server.logs():
            assert time.monotonic() < deadline, server.logs()
            time.sleep(0.1)
        assert client.get("/v2/health/ready").status_code == 200
        answer = client.post("/predict", json={"instances": [[0.5] * 64]})
        assert answer.status_code == 200 and answer.json()["trial"] == "mlp-small"
        stale = metric_samples(client)
    # What the KatibNasServedModelStale alert compares: equal while the pointed-to model is served, then
    # best.json's newer time against the served model's.
    model, best = "katib_nas_model_published_timestamp_seconds", "katib_nas_best_published_timestamp_seconds"
    assert fresh[model] == fresh[best] == served_at
    assert stale[model] == served_at
    assert stale[best] == json.loads((experiment / "best.json").read_text())["published_at"] > served_at


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({}, "server settings: MODEL_DIR: not set; export it (for example MODEL_DIR=/models/<experiment>)"),
        (
            {"MODEL_DIR": "/nonexistent/exp"},
            "server settings: MODEL_DIR: /nonexistent/exp is not a directory; "
            "point it at the experiment's directory on the model volume",
        ),
        (
            {"MODEL_DIR": ".", "RELOAD_INTERVAL": "-1"},
            "server settings: RELOAD_INTERVAL: Input should be greater than 0",
        ),
        (
            {"MODEL_DIR": ".", "MODEL_NAME": "My_Model"},
            "server settings: MODEL_NAME: String should match pattern '^[a-z0-9]([-a-z0-9._]{0,61}[a-z0-9])?$'",
        ),
        (
            {"MODEL_DIR": ".", "MAX_BATCH": "lots"},
            "server settings: MAX_BATCH: Input should be a valid integer, unable to parse string as an integer",
        ),
    ],
)
def test_bad_settings_stop_the_server_with_one_line(env: dict[str, str], line: str) -> None:

    environment = {k: v for k, v in server_image_env().items() if k not in ("MODEL_DIR", "MODEL_NAME")} | env
    proc = subprocess.run(
        [sys.executable, "-m", "katib_nas_server", "serve", "--port=0"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )
    assert (proc.returncode, proc.stderr) == (2, line + "\n")
