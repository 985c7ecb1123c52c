"""The current model and its hot swap.

A watcher checks best.json every RELOAD_INTERVAL seconds. When the pointer moves, the new model is
loaded in a worker thread beside the old one, then one reference assignment swaps them: requests
that already hold the old model finish on it, later ones get the new one, and none fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from .model import LoadedModel, ModelNotFound, load, resolve

log = logging.getLogger("katib_nas_server")


class ModelHolder:
    def __init__(self, model_dir: Path, threads: int, on_swap: Callable[[LoadedModel | None, LoadedModel], None]):
        self.model_dir, self.threads, self.on_swap = model_dir, threads, on_swap
        self.current: LoadedModel | None = None
        self.waiting_for = "no model loaded yet from MODEL_DIR"
        self.pointer_published_at: float | None = None  # best.json's published_at at the last check
        self._failed_version: str | None = None
        self._problem: str | None = None  # the last problem logged, so a stuck pointer logs once

    def refresh(self) -> bool:
        """Load and swap in the pointed-to model if it changed; True when a swap happened. Blocking.
        A missing or malformed pointer, or a record not complete yet, is retried on the next check;
        a model that fails to load is not retried until the pointer moves."""
        try:
            pointer = resolve(self.model_dir)
            self.pointer_published_at = pointer.published_at
            if (self.current is not None and self.current.version == pointer.version) or (
                pointer.version == self._failed_version
            ):
                return False
            new = load(pointer, self.threads)
        except ModelNotFound as exc:
            self._report(str(exc))
            return False
        except Exception as exc:  # a corrupt or unreadable model must not take down the one being served
            self._failed_version = pointer.version
            self._report(
                f"cannot load trial {pointer.record.name} (see the server log)", f"cannot load {pointer.record}: {exc}"
            )
            return False
        old, self.current, self._problem = self.current, new, None
        self.on_swap(old, new)
        log.info("serving %s (trial %s)", new.version, new.trial)
        return True

    def _report(self, problem: str, detail: str | None = None) -> None:
        """Readiness says `problem` until a model is loaded (no absolute paths: clients see it); the log
        says `detail` once per new problem."""
        if self.current is None:
            self.waiting_for = problem
        if problem != self._problem:
            self._problem = problem
            serving = self.current.version if self.current else "nothing"
            log.warning("%s; still serving %s", detail or problem, serving)

    async def watch(self, interval: float) -> None:
        """Check the pointer forever. A failed check (a bug, an I/O error) is logged and retried: the
        watcher never ends while the server runs; readiness reports it if it does."""
        while True:
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:
                log.exception("checking %s failed; retrying in %g s", self.model_dir, interval)
            await asyncio.sleep(interval)
