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
        self.waiting_for = f"no model loaded yet from {model_dir}"
        self._failed_version: str | None = None

    def refresh(self) -> bool:
        """Load and swap in the pointed-to model if it changed; True when a swap happened. Blocking."""
        try:
            pointer = resolve(self.model_dir)
        except ModelNotFound as exc:
            if self.current is None:
                self.waiting_for = str(exc)
            return False
        if (
            self.current is not None and self.current.version == pointer.version
        ) or pointer.version == self._failed_version:
            return False
        try:
            new = load(pointer, self.threads)
        except Exception as exc:  # a corrupt or unreadable model must not take down the one being served
            self._failed_version = pointer.version
            log.error(
                "cannot load %s (%s); still serving %s", pointer.record, exc, self.current and self.current.version
            )
            if self.current is None:
                self.waiting_for = f"cannot load {pointer.record}: {exc}"
            return False
        old, self.current = self.current, new
        self.on_swap(old, new)
        log.info("serving %s (trial %s)", new.version, new.trial)
        return True

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.to_thread(self.refresh)
            await asyncio.sleep(interval)
