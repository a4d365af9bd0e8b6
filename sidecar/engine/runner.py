"""The inference thread: the one boundary between the event loop and model code."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Job:
    fn: Callable[[], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


def _set_result(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


class InferenceRunner:
    """Runs model calls one at a time on a dedicated thread; callers await futures.

    Jobs whose future was cancelled (the caller timed out or went away) before
    the thread reached them are skipped, so abandoned work costs nothing.
    """

    def __init__(self, name: str = "inference") -> None:
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._started = False
        self.depth = 0

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if not self._started:
            self._started = True
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish queued jobs, then stop the thread."""
        if self._started:
            self._queue.put(None)
            self._thread.join(timeout)
            self._started = False

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the inference thread and await its result."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self.depth += 1
        self._queue.put(_Job(fn, fut, loop))
        try:
            return await fut
        finally:
            self.depth -= 1

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if job.future.cancelled():
                continue
            try:
                result = job.fn()
            except BaseException as e:  # handed to the awaiting caller
                try:
                    job.loop.call_soon_threadsafe(_set_exception, job.future, e)
                except RuntimeError:
                    log.debug("event loop closed before an inference error could be delivered")
            else:
                try:
                    job.loop.call_soon_threadsafe(_set_result, job.future, result)
                except RuntimeError:
                    log.debug("event loop closed before an inference result could be delivered")
