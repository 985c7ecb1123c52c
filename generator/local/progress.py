"""Live progress of a local run: one status line kept current on a terminal, plus a line per event."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self.started = time.monotonic()
        self._status = ""

    def event(self, line: str) -> None:
        elapsed = time.monotonic() - self.started
        if self.live:
            self.stream.write("\r\x1b[K")
        self.stream.write(f"[{elapsed:6.1f}s] {line}\n")
        if self.live and self._status:
            self.stream.write(self._status)
        self.stream.flush()

    def status(self, running: int, done: int, stopped: int, failed: int, total: int, best: str) -> None:
        self._status = (
            f"trials {done + failed}/{total}: {running} running, {done} done ({stopped} stopped early), "
            f"{failed} failed; best {best}"
        )
        if self.live:
            self.stream.write("\r\x1b[K" + self._status)
            self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()
