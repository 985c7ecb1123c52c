"""The drawing page, in Debian's headless Chromium: a person draws a digit and sees the prediction."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import Browser, FilePayload, Page, Request, sync_playwright

from katib_nas_contract.datasets import load_digits

from .conftest import copy_records, serving
from .test_server import png


def held_out_digits() -> tuple[np.ndarray, np.ndarray]:
    arrays = load_digits()
    return arrays.x_test, arrays.y_test


CHROMIUM = "/usr/bin/chromium"
# As the environment's probe found: without these, Chromium's background connections fail on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs Debian's chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def draw(page: Page, strokes: list[list[tuple[int, int]]]) -> None:
    box = page.locator("#pad").bounding_box()
    assert box is not None
    for stroke in strokes:
        page.mouse.move(box["x"] + stroke[0][0], box["y"] + stroke[0][1])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=8)
        page.mouse.up()


def test_drawing_a_digit_shows_the_servers_prediction_and_probabilities(
    browser: Browser, digits_records: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    experiment = copy_records(digits_records, tmp_path / "exp", best="mlp-wide")
    with serving(experiment, tmp_path / "server.log") as server:
        page = browser.new_page(viewport={"width": 900, "height": 600})
        sent: list[dict[str, Any]] = []

        def remember(req: Request) -> None:
            if req.url.endswith("/predict") and req.method == "POST":
                sent.append(json.loads(req.post_data or "{}"))

        page.on("request", remember)
        page.goto(server.url + "/")
        page.wait_for_selector("text=trial mlp-wide")
        # A "7": a bar across the top, then a stroke down to the bottom left.
        draw(page, [[(70, 60), (210, 60), (120, 230)]])
        page.wait_for_function("document.querySelectorAll('[data-testid=probabilities] .bar').length === 10")
        shown = page.locator("[data-testid=prediction]").inner_text()
        shot = tmp_path / "page.png"
        page.screenshot(path=str(shot))
        # The upload box: a photographed-looking "0" from the held-out digits.
        zero = next(x for x, y in zip(*held_out_digits(), strict=True) if y == 0)
        page.set_input_files("#file", files=FilePayload(name="zero.png", mimeType="image/png", buffer=png(zero)))
        page.wait_for_function("document.querySelector('[data-testid=prediction]').textContent === '0'")
        page.close()

        # The page sent the drawing as one 64-value row in [0, 1], and shows what the server answers for it.
        assert len(sent) == 1 and len(sent[0]["instances"][0]) == 64
        row = np.asarray(sent[0]["instances"][0])
        assert row.min() >= 0 and row.max() <= 1 and row.max() > 0.5
        with server.client() as client:
            answer = client.post("/predict", json=sent[0]).json()
        assert shown == str(answer["predictions"][0]) == "7"
        assert shot.stat().st_size > 10_000
    # Kept for a person to look at: pytest's tmp dir of this test.
    print(f"screenshot: {shot}")
