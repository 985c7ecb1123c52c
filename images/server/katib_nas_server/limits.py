"""Admission of request bodies: what one request may cost before the application spends on it.

Every POST is inference. A body declared over MAX_BODY_BYTES gets 413 before a byte of it is read;
one that grows past it while streaming gets 413 too. A large body (over INLINE_BODY_BYTES, or of
unknown length) and every picture first waits for one of MAX_CONCURRENT_REQUESTS turns, at most
MAX_QUEUED_REQUESTS of them in line (more get 503 with Retry-After), so the memory and CPU time in
flight stay within the cost model in README.md. While a request waits, uvicorn stops reading its
connection after 64 KiB, so waiting costs little. Once it has its turn, the whole body must arrive
within READ_TIMEOUT, else 408 and the connection closes.
"""

from __future__ import annotations

import asyncio
import json
import time

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Bodies up to this size are parsed and scored on the event loop: at most a few milliseconds, less
# than a hand-off to a worker thread costs a single-row request.
INLINE_BODY_BYTES = 64 * 1024


class AdmissionMiddleware:
    def __init__(
        self, app: ASGIApp, max_body_bytes: int, read_timeout: float, max_concurrent: int, max_queued: int
    ) -> None:
        self.app, self.max_body_bytes, self.read_timeout = app, max_body_bytes, read_timeout
        self.turns = asyncio.Semaphore(max_concurrent)
        self.max_queued, self.queued = max_queued, 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        declared = content_length(scope)
        limit = self.max_body_bytes
        if declared is not None and declared > limit:
            message = f"request body of {declared} bytes is over the {limit}-byte limit (MAX_BODY_BYTES)"
            await respond(send, 413, message)
            return
        if declared is not None and declared <= INLINE_BODY_BYTES and not scope["path"].endswith("/image"):
            await self.app(scope, self.timed(receive), send)
            return
        if self.turns.locked() and self.queued >= self.max_queued:
            await respond(send, 503, "busy: too many large requests in line (MAX_QUEUED_REQUESTS); retry", retry=1)
            return
        self.queued += 1
        try:
            await self.turns.acquire()
        finally:
            self.queued -= 1
        try:
            await self.app(scope, self.timed(receive), send)
        finally:
            self.turns.release()

    def timed(self, receive: Receive) -> Receive:
        """`receive` with the body deadline and the streaming size cap."""
        deadline = time.monotonic() + self.read_timeout
        received = 0

        async def timed_receive() -> Message:
            nonlocal received
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(
                    408,
                    f"request body not received within {self.read_timeout:g} s (READ_TIMEOUT)",
                    headers={"Connection": "close"},
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise HTTPException(
                        413,
                        f"request body is over the {self.max_body_bytes}-byte limit (MAX_BODY_BYTES)",
                        headers={"Connection": "close"},
                    )
            return message

        return timed_receive


def content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def respond(send: Send, status: int, message: str, retry: int | None = None) -> None:
    """An error answer sent before the application ran; the connection closes (the body is unread)."""
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
    headers.append((b"content-length", str(len(body)).encode()))
    if retry is not None:
        headers.append((b"retry-after", str(retry).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
