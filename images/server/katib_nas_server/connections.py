"""uvicorn's httptools protocol with the connection limits it lacks (uvicorn 0.54 has no header-size
limit, no read timeout and no connection cap for httptools; `limit_concurrency` answers 503 only once
a request head is complete, so half-sent heads are never counted).

- A request head over MAX_HEADER_BYTES gets 431 and the connection closes. Counted per read, before
  httptools concatenates a huge header chunk by chunk (quadratic), so parsing stays linear.
- A connection must deliver a whole request head within READ_TIMEOUT of connecting or of its last
  response, else it gets 408 (or is closed silently when it sent nothing): slowloris clients cannot
  hold file descriptors. The body's own deadline is the admission middleware's (`limits.py`).
- A client must take its answer: once the server's send buffer for it is full, the rest must drain
  within READ_TIMEOUT, else the connection is dropped with its unsent bytes, and the request's turn
  and memory go back.
- At most MAX_PIPELINED requests wait behind the one at work on a connection (uvicorn queues them
  without limit and reads on after each answer); more in one go drops the connection, and reading
  stays paused until the queue drains.
- At most MAX_CONNECTIONS are open. Over the cap the connection waiting longest for a request head
  (idle keep-alive or half-sent) is closed, else the one waiting longest for a request body, so a
  kubelet probe always gets through a flood of idle or stalled connections; when every connection has
  a request at work in the application, the new one is closed.
- A request httptools cannot parse gets the same JSON error body as every other refusal.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

MAX_PIPELINED = 8  # requests queued behind the one at work on one connection


def limited_protocol(max_header_bytes: int, read_timeout: float, max_connections: int) -> type[HttpToolsProtocol]:
    """The protocol class for `uvicorn.run(http=...)` with these limits."""

    class LimitedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(
            self,
            config: Config,
            server_state: ServerState,
            app_state: dict[str, Any],
            _loop: asyncio.AbstractEventLoop | None = None,
        ) -> None:
            super().__init__(config, server_state, app_state, _loop)
            self.in_head = True  # idle, or a request head is arriving
            self.head_bytes = 0
            self.message_ended_here = False  # a message ended earlier in that read (pipelining)
            self.waiting_since = 0.0  # for a request head, or for the body of the request at work
            self.deadline: asyncio.TimerHandle | None = None
            self.write_deadline: asyncio.TimerHandle | None = None
            self.at_work: RequestResponseCycle | None = None  # the request the application has

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.wait_for_head()
            if len(self.connections) > max_connections:
                others = [c for c in self.connections if isinstance(c, LimitedHttpToolsProtocol) and c is not self]
                victim = min(
                    (c for c in others if c.idle() or c.awaiting_body()),
                    key=lambda c: (not c.idle(), c.waiting_since),
                    default=self,
                )
                if victim.awaiting_body():
                    victim.drop()
                else:
                    victim.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            self.cancel_deadline()
            self.cancel_write_deadline()
            self.tell_gone()
            super().connection_lost(exc)

        def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
            self.at_work = cycle
            super()._start_asgi_task(cycle, app)

        def idle(self) -> bool:
            """No request of this connection is in the application."""
            return self.in_head and (self.cycle is None or self.cycle.response_complete)

        def awaiting_body(self) -> bool:
            """The application has this connection's request and waits for more of its body."""
            cycle = self.at_work
            return cycle is not None and cycle.more_body and not cycle.response_started and not self.pipeline

        def tell_gone(self) -> None:
            """The request at work learns its client is gone. uvicorn tells only the newest request parsed,
            which with requests pipelined behind it is another: the one at work would go on writing to a
            closed transport (an error) or wait for a drain that never comes."""
            self.pipeline.clear()
            cycle = self.at_work
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()
            self.flow.resume_writing()

        def drop(self) -> None:
            """Close now, discarding what is unsent."""
            self.tell_gone()
            self.transport.abort()

        def data_received(self, data: bytes) -> None:
            self.message_ended_here = False
            head_from_before = self.in_head and self.head_bytes > 0
            super().data_received(data)
            if not self.in_head or self.transport.is_closing():
                return
            if head_from_before or not self.message_ended_here:
                self.head_bytes += len(data)  # the whole read: at most one read more than the head
            if self.head_bytes > max_header_bytes:
                self.reject(431, f"request head over {max_header_bytes} bytes (MAX_HEADER_BYTES)")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.in_head = True
            if self.deadline is None:  # a pipelined head: its time starts now
                self.wait_for_head()

        def on_headers_complete(self) -> None:
            self.in_head, self.head_bytes = False, 0
            self.waiting_since = self.loop.time()
            self.cancel_deadline()
            super().on_headers_complete()
            if self.transport.is_closing():  # dropped earlier in this read: parse the rest, keep nothing
                self.pipeline.clear()
            elif len(self.pipeline) > MAX_PIPELINED:
                self.drop()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self.message_ended_here = True

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.pipeline and not self.transport.is_closing():  # uvicorn reads on after each answer
                self.flow.pause_reading()
            idle = self.cycle is None or self.cycle.response_complete
            if idle and not self.transport.is_closing():
                self.in_head = True
                self.wait_for_head()

        def wait_for_head(self) -> None:
            self.waiting_since = self.loop.time()
            self.cancel_deadline()
            self.deadline = self.loop.call_later(read_timeout, self.head_timed_out)

        def cancel_deadline(self) -> None:
            if self.deadline is not None:
                self.deadline.cancel()
                self.deadline = None

        def head_timed_out(self) -> None:
            self.deadline = None
            if self.transport.is_closing() or not self.in_head:
                return
            if self.head_bytes:
                self.reject(408, f"request head not received within {read_timeout:g} s (READ_TIMEOUT)")
            elif self.transport.get_write_buffer_size():  # an answer the client never read
                self.drop()
            else:
                self.transport.close()

        def pause_writing(self) -> None:
            super().pause_writing()
            self.cancel_write_deadline()
            self.write_deadline = self.loop.call_later(read_timeout, self.drop)

        def resume_writing(self) -> None:
            self.cancel_write_deadline()
            super().resume_writing()

        def cancel_write_deadline(self) -> None:
            if self.write_deadline is not None:
                self.write_deadline.cancel()
                self.write_deadline = None

        def send_400_response(self, msg: str) -> None:
            if not self.transport.is_closing():
                self.reject(400, msg)

        def reject(self, status: int, message: str) -> None:
            body = json.dumps({"error": message}).encode()
            head = b"content-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n" % len(body)
            self.transport.write(STATUS_LINE[status] + head + body)
            self.transport.close()

    return LimitedHttpToolsProtocol
