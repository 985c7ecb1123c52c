"""Server benchmarks on loopback: one uvicorn worker pinned to core 0, the load on core 1.

- single-row /infer capacity, closed loop with wrk (aim >= 2,000 requests/s);
- p50/p99 latency at 1,000 requests/s offered, open loop (aim p99 <= 5 ms): requests leave on a
  fixed schedule and latency counts from the scheduled time, so a stalled server cannot hide
  queueing (no coordinated omission);
- samples/s with 32-row batches, wrk (aim >= 10,000 per core);
- the model's forward pass alone in onnxruntime, so the HTTP overhead ratio is visible;
- the abuse mix (issue 17): p50/p99 and errors of legitimate single-row requests at 200 requests/s,
  quiet and then while hostile clients run (two uploading large pictures, two posting a million tiny
  JSON values, 200 connections sending half a request and reconnecting when closed), with the
  liveness probe's worst latency, the server's peak memory and its open file descriptors.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from katib_nas_contract.best import Best, publish
from katib_nas_server.model import load, resolve

SERVER_CORE, LOAD_CORE = "0", "1"
PORT = 18080
INFER = "/v2/models/katib-nas/infer"


def pinned(core: str, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", core, *cmd] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else cmd


def train(root: Path) -> Path:
    """The model under test: the trainer's default digits MLP (3 epochs is enough; speed, not accuracy)."""
    cmd = [sys.executable, "-W", "ignore", "-m", "katib_nas_trainer", "--dataset=digits", f"--output-dir={root}"]
    subprocess.run([*cmd, "--experiment=bench", "--trial-name=mlp", "--epochs=3"], check=True, capture_output=True)
    experiment = root / "bench"
    publish(experiment, Best("mlp", "accuracy", 0.0, "records"))
    return experiment


def body(rows: int) -> bytes:
    data = np.random.default_rng(0).random((rows, 64)).round(4)
    tensor = {"name": "input", "shape": [rows, 64], "datatype": "FP32", "data": data.ravel().tolist()}
    return json.dumps({"inputs": [tensor]}).encode()


def wrk(payload: bytes, workdir: Path, seconds: int = 10, connections: int = 16) -> float:
    (workdir / "body.json").write_bytes(payload)
    script = workdir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f'local f = io.open("{workdir / "body.json"}", "rb"); wrk.body = f:read("*a"); f:close()\n'
    )
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), f"http://127.0.0.1:{PORT}{INFER}"]
    out = subprocess.run(pinned(LOAD_CORE, cmd), check=True, capture_output=True, text=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


async def open_loop(payload: bytes, rate: float, seconds: float, connections: int = 64) -> tuple[list[float], int]:
    """Latencies (s) of requests sent on a fixed schedule at `rate`/s over keep-alive connections, and
    how many failed (not 200, or the connection broke)."""
    request = (
        f"POST {INFER} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(await asyncio.open_connection("127.0.0.1", PORT))
    latencies: list[float] = []
    failures = 0

    async def one(scheduled: float) -> None:
        nonlocal failures
        reader, writer = await idle.get()
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError):
            failures += 1
            writer.close()
            idle.put_nowait(await asyncio.open_connection("127.0.0.1", PORT))
            return
        latencies.append(time.perf_counter() - scheduled)
        failures += not head.startswith(b"HTTP/1.1 200")
        idle.put_nowait((reader, writer))

    start = time.perf_counter() + 0.1
    tasks = []
    for i in range(int(rate * seconds)):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    return latencies, failures


def percentile(latencies: list[float], q: float) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


# --- the abuse mix ------------------------------------------------------------------------------

ABUSE_RATE = 200  # legitimate single-row requests/s, quiet and under abuse
SLOWLORIS = 200


def hostile() -> None:
    """`bench_server.py --hostile`: the hostile clients, until killed (a separate process, so their
    work does not slow the measuring client's event loop)."""
    import httpx
    from PIL import Image

    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (2500, 2500), dtype=np.uint8), "L").save(buffer, "PNG", compress_level=1)
    png = buffer.getvalue()
    items = b'{"instances": [[' + b"0," * 999_999 + b"0]]}"
    url = f"http://127.0.0.1:{PORT}"

    def upload(client: httpx.Client) -> object:
        return client.post("/predict/image", files={"file": ("big.png", png, "image/png")})

    def flood(client: httpx.Client) -> object:
        return client.post("/predict", content=items, headers={"content-type": "application/json"})

    def forever(work: object) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            while True:
                try:
                    work(client)  # type: ignore[operator]
                except httpx.TransportError:
                    time.sleep(0.01)

    for work in (upload, upload, flood, flood):
        threading.Thread(target=forever, args=(work,), daemon=True).start()

    def half_request() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", PORT))
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: appl")
        return sock

    socks = [half_request() for _ in range(SLOWLORIS)]
    while True:  # reconnect every half-sent request the server closes
        readable, _, _ = select.select(socks, [], [], 0.2)
        for sock in readable:
            sock.close()
            socks[socks.index(sock)] = half_request()


def process_figures(pid: int) -> tuple[float, int]:
    """Peak resident memory (MiB) and open file descriptors of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    return peak, len(os.listdir(f"/proc/{pid}/fd"))


async def probed_open_loop(rate: float, seconds: float, pid: int) -> tuple[list[float], int, float, int]:
    """open_loop with a liveness probe every 100 ms on a fresh connection, as a kubelet does; returns
    the latencies, failures, the probe's worst latency and the most file descriptors the server held."""
    worst, most_fds = 0.0, 0
    done = asyncio.Event()

    async def probe() -> None:
        nonlocal worst, most_fds
        while not done.is_set():
            started = time.perf_counter()
            reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
            writer.write(b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer = await reader.read()
            writer.close()
            worst = max(worst, time.perf_counter() - started if answer.startswith(b"HTTP/1.1 200") else 1e9)
            most_fds = max(most_fds, process_figures(pid)[1])
            await asyncio.sleep(0.1)

    prober = asyncio.create_task(probe())
    latencies, failures = await open_loop(body(1), rate, seconds)
    done.set()
    await prober
    return latencies, failures, worst, most_fds


def abuse_mix(pid: int) -> dict[str, float]:
    quiet, quiet_failures, quiet_probe, quiet_fds = asyncio.run(probed_open_loop(ABUSE_RATE, 10, pid))
    quiet_peak = process_figures(pid)[0]
    attackers = subprocess.Popen(pinned(LOAD_CORE, [sys.executable, "-W", "ignore", __file__, "--hostile"]))
    try:
        time.sleep(3)  # the hostile clients at full strength
        loud, loud_failures, loud_probe, loud_fds = asyncio.run(probed_open_loop(ABUSE_RATE, 10, pid))
    finally:
        attackers.kill()
        attackers.wait()
    return {
        "quiet_p50": percentile(quiet, 0.5),
        "quiet_p99": percentile(quiet, 0.99),
        "quiet_errors": quiet_failures,
        "quiet_probe": quiet_probe,
        "quiet_fds": quiet_fds,
        "quiet_peak": quiet_peak,
        "abuse_p50": percentile(loud, 0.5),
        "abuse_p99": percentile(loud, 0.99),
        "abuse_errors": loud_failures,
        "abuse_probe": loud_probe,
        "abuse_fds": loud_fds,
        "abuse_peak": process_figures(pid)[0],
        "requests": ABUSE_RATE * 10,
    }


def forward_seconds(experiment: Path, rows: int, repeats: int = 3000) -> float:
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {int(SERVER_CORE)})  # the core the server had
    model = load(resolve(experiment), threads=1)
    x = np.random.default_rng(0).random((rows, 1, 8, 8), dtype=np.float32)
    for _ in range(200):
        model.logits(x)
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(repeats):
            model.logits(x)
        runs.append((time.perf_counter() - started) / repeats)
    return statistics.median(runs)


def main() -> int:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: `make bench` installs it (apt-get install wrk)")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        experiment = train(workdir / "models")
        env = dict(os.environ, MODEL_DIR=str(experiment))
        cmd = [sys.executable, "-m", "katib_nas_server", "serve", "--host=127.0.0.1", f"--port={PORT}"]
        server = subprocess.Popen(pinned(SERVER_CORE, cmd), env=env, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    asyncio.run(open_loop(body(1), 10, 0.1, connections=1))
                    break
                except OSError:
                    time.sleep(0.2)
            wrk(body(1), workdir, seconds=3)  # warm-up
            single = wrk(body(1), workdir)
            batched = wrk(body(32), workdir)
            latencies, failures = asyncio.run(open_loop(body(1), 1000, 10))
            if failures:
                raise SystemExit(f"{failures} requests failed in the open-loop run")
            abuse = abuse_mix(server.pid)
        finally:
            server.terminate()
            server.wait()
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        f1, f32 = forward_seconds(experiment, 1), forward_seconds(experiment, 32)

    print("server (one uvicorn worker on one core, loopback; digits MLP 64-128-128-10)")
    rows = [
        ("single-row infer capacity", f"{single:,.0f} req/s", ">= 2,000 req/s", single / 2000),
        ("p50 at 1,000 req/s offered", f"{p50 * 1e3:.2f} ms", "", None),
        ("p99 at 1,000 req/s offered", f"{p99 * 1e3:.2f} ms", "<= 5 ms", 5e-3 / p99),
        (
            "32-row batches",
            f"{batched * 32:,.0f} samples/s ({batched:,.0f} req/s)",
            ">= 10,000 samples/s",
            batched * 32 / 1e4,
        ),
        ("forward alone, 1 row", f"{f1 * 1e6:.1f} us ({1 / f1:,.0f}/s)", "", None),
        ("forward alone, 32 rows", f"{f32 * 1e6:.1f} us ({32 / f32:,.0f} samples/s)", "", None),
    ]
    for name, figure, aim, ratio in rows:
        verdict = f"{ratio:.2f}x aim" if ratio is not None else ""
        print(f"  {name:<28} {figure:<36} {aim:<22} {verdict}")
    print(
        f"  HTTP overhead: a single-row request costs {1 / single / f1:.0f}x its forward pass; "
        f"a 32-row request {1 / batched / f32:.0f}x"
    )
    a = abuse
    print(
        f"server under the abuse mix (legitimate single rows at {ABUSE_RATE} req/s, 10 s each; "
        f"2 picture uploaders, 2 million-value JSON posters, {SLOWLORIS} half-sent requests)"
    )
    print(f"  {'':<28} {'quiet':<18} {'under abuse':<18} aim")
    for name, key, unit, aim in (
        ("p50", "p50", "ms", ""),
        ("p99", "p99", "ms", "<= 100 ms under abuse"),
        ("errors", "errors", "", "0"),
        ("liveness probe, worst", "probe", "ms", "< 1,000 ms (the probe's timeout)"),
        ("server peak memory (VmHWM)", "peak", "MiB", "< 512 MiB (microk8s profile limit)"),
        ("server open fds, most", "fds", "", ""),
    ):
        quiet, loud = a[f"quiet_{key}"], a[f"abuse_{key}"]
        scale = 1e3 if unit == "ms" else 1
        figures = [f"{v * scale:,.2f} {unit}" if unit == "ms" else f"{v:,.0f} {unit}".strip() for v in (quiet, loud)]
        if key == "errors":
            figures = [f"{v:.0f} / {a['requests']:.0f}" for v in (quiet, loud)]
        print(f"  {name:<28} {figures[0]:<18} {figures[1]:<18} {aim}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--hostile"]:
        hostile()
    sys.exit(main())
