"""The batcher: the one bridge between the event loop and a model's inference thread.

Callers ``await score(...)``. Requests queue up; a preparing thread takes everything that
arrived within ``max_wait_ms`` of the first (or until ``batch_tokens`` worth is waiting) and
tokenizes it into groups of about ``batch_tokens`` tokens; the inference thread sorts each
group's pairs by length and runs them in batches of at most ``batch_tokens`` (padded) tokens,
so pairs of concurrent searches share forward passes. The two threads overlap: the next
group is tokenized while the current one is in the model (the tokenizer releases the GIL),
and at most one group waits ready (the queue is taken again only once it is in the model, so
searches that arrive meanwhile still share batches). Results go back with ``loop.call_soon_threadsafe``. A
request that would wait past its budget fails at once (``Overloaded``) so the proxy falls
back instead of queueing; a cancelled request leaves the queue; an exception reaches exactly
the requests whose pairs were in the failing batch.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sidecar.engine.pairs import forward_splitting_on_oom, token_batches
from sidecar.engine.protocol import (
    Backend,
    Encoded,
    ManyQueryBackend,
    ModelTimeout,
    Overloaded,
    PairBackend,
    Scored,
    ScoresFromTimed,
)
from sidecar.engine.stats import BatchStats

log = logging.getLogger(__name__)

# re-exported: the errors a caller of score catches, and the figures
__all__ = ["BatchStats", "Batcher", "ModelTimeout", "Overloaded"]


@dataclass(eq=False)  # hashed by identity: the set of taken requests
class _Request:
    """The documents against one or more queries (a search's query and its variants)."""

    queries: tuple[str, ...]
    documents: Sequence[str]
    instruction: str | None
    future: asyncio.Future[list[list[float]]]
    loop: asyncio.AbstractEventLoop
    est_tokens: int
    enqueued: float = field(default_factory=time.monotonic)
    scores: list[list[float]] = field(default_factory=list)  # per query, per document
    remaining: int = 0
    done: bool = False
    first_batch: float | None = None  # when its first forward pass started (monotonic)
    finished: float | None = None

    def deliver(self, result: list[list[float]] | BaseException) -> None:
        if self.done:
            return
        self.done = True
        self.finished = time.monotonic()
        try:
            self.loop.call_soon_threadsafe(_settle, self.future, result)
        except RuntimeError:
            log.debug("event loop closed before a result could be delivered")


def _settle(fut: asyncio.Future[list[list[float]]], result: list[list[float]] | BaseException) -> None:
    if fut.done():
        return
    if isinstance(result, BaseException):
        fut.set_exception(result)
    else:
        fut.set_result(result)


_Item = tuple[_Request, tuple[int, int], Encoded]  # a request, (query, document), one encoded pair


class Batcher(ScoresFromTimed):
    """Owns one model's inference thread (the model is built on it) and, for a pair backend,
    the thread that tokenizes ahead of it."""

    def __init__(
        self,
        name: str,
        load: Callable[[], Backend],
        *,
        batch_tokens: int = 16384,
        max_wait_ms: float = 2.0,
        max_queue: int = 256,
        prepare_ahead: bool = True,
    ) -> None:
        self.name = name
        self.prepare_ahead = prepare_ahead  # False: one thread tokenizes and runs (benchmarks compare)
        self._load = load
        self.batch_tokens = batch_tokens
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.stats = BatchStats()
        self.backend: Backend | None = None
        self._pending: deque[_Request] = deque()
        self._queued_tokens = 0
        self._taken: set[_Request] = set()  # taken from the queue, not yet answered
        self._ready_groups: queue.Queue[list[_Item] | None] = queue.Queue(maxsize=1 if prepare_ahead else 0)
        self._cond = threading.Condition()
        self._stopping = False
        self._tokens_per_s = 0.0  # measured; 0 until the first batch
        self._ready: asyncio.Future[Backend] | None = None
        self._thread = threading.Thread(target=self._main, name=f"inference-{name}", daemon=True)

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the model: queued, or tokenized and not yet in a forward pass."""
        return len(self._pending) + sum(r.first_batch is None for r in list(self._taken))

    async def start(self) -> Backend:
        """Start the thread, build and warm up the model there; return it."""
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._loop = loop
        self._thread.start()
        return await self._ready

    async def aclose(self) -> None:
        """``stop`` off the event loop."""
        await asyncio.to_thread(self.stop)

    def info(self) -> dict[str, Any]:
        """What the health endpoint shows of this model."""
        return {
            "backend": type(self.backend).__name__ if self.backend else None,
            "queue_depth": self.queue_depth,
            "batches": self.stats.batches,
            "padding_waste": round(self.stats.padding_waste, 4),
        }

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # event loop side
    async def score_timed(
        self, query: str, documents: Sequence[str], instruction: str | None, timeout_s: float
    ) -> Scored:
        """The scores with ``queue_ms`` (waiting for the thread) and ``model_ms`` (forward passes)."""
        return (await self.score_queries([query], documents, instruction, timeout_s))[0]

    async def score_queries(
        self, queries: Sequence[str], documents: Sequence[str], instruction: str | None, timeout_s: float
    ) -> list[Scored]:
        """The documents against every query as one request: one wait in the queue, their
        pairs sorted and batched together."""
        if not documents:
            return [Scored([]) for _ in queries]
        return await self._submit(tuple(queries), documents, instruction, timeout_s)

    def _estimate(self, queries: Sequence[str], documents: Sequence[str]) -> int:
        limit = getattr(self.backend, "max_length", 512)
        return sum(min(len(q) // 3 + 64 + len(d) // 3, limit) for q in queries for d in documents)

    async def _submit(
        self,
        queries: tuple[str, ...],
        documents: Sequence[str],
        instruction: str | None,
        timeout_s: float,
    ) -> list[Scored]:
        loop = asyncio.get_running_loop()
        est = self._estimate(queries, documents)
        with self._cond:
            work = self._queued_tokens + sum(r.est_tokens for r in self._taken) + est
            wait = work / self._tokens_per_s if self._tokens_per_s else 0.0
            waiting = self.queue_depth
            if waiting >= self.max_queue or wait > timeout_s:
                self.stats.overloaded += 1
                raise Overloaded(
                    f"model {self.name!r}: {waiting} requests queued, about {wait * 1000:.0f} ms of work"
                )
            request = _Request(queries, documents, instruction, loop.create_future(), loop, est)
            self._pending.append(request)
            self._queued_tokens += est
            self._cond.notify()
        try:
            result = await asyncio.wait_for(request.future, timeout_s)
            if request.finished is None:
                return [Scored(r) for r in result]
            start = request.first_batch or request.finished
            queue_ms, model_ms = (start - request.enqueued) * 1000, (request.finished - start) * 1000
            return [Scored(r, queue_ms, model_ms) for r in result]
        except asyncio.TimeoutError:
            raise ModelTimeout(f"model {self.name!r} took longer than {timeout_s * 1000:.0f} ms") from None
        finally:
            if not request.future.done():
                request.future.cancel()
            with self._cond:
                if request in self._pending:  # cancelled before the thread took it
                    self._pending.remove(request)
                    self._queued_tokens -= request.est_tokens
                self._taken.discard(request)

    # inference thread
    def _main(self) -> None:
        try:
            backend = self._load()
            backend.warm_up()
        except BaseException as e:
            self._loop.call_soon_threadsafe(self._fail_start, e)
            return
        self.backend = backend
        self._loop.call_soon_threadsafe(self._started, backend)
        if not isinstance(backend, PairBackend):
            while (requests := self._take()) is not None:
                self._run_whole(backend, requests)
            return
        if not self.prepare_ahead:
            while (requests := self._take()) is not None:
                self._group(backend, requests)
                while not self._ready_groups.empty():
                    if (group := self._ready_groups.get()) is not None:
                        self._run_group(backend, group)
            return
        preparing = threading.Thread(
            target=self._prepare, args=(backend,), name=f"prepare-{self.name}", daemon=True
        )
        preparing.start()
        while (group := self._ready_groups.get()) is not None:
            self._ready_groups.task_done()  # taken: the preparing thread may take the queue again
            self._run_group(backend, group)
        preparing.join()

    def _started(self, backend: Backend) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(backend)

    def _fail_start(self, exc: BaseException) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(exc)

    def _take(self) -> list[_Request] | None:
        with self._cond:
            while not self._pending:
                if self._stopping:
                    return None
                self._cond.wait()
            until = self._pending[0].enqueued + self.max_wait
            while self._queued_tokens < self.batch_tokens and not self._stopping:
                left = until - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            taken = [r for r in self._pending if not r.future.cancelled()]
            self._pending.clear()
            self._queued_tokens = 0
            self._taken.update(taken)
        return taken

    def _run_whole(self, backend: Backend, requests: list[_Request]) -> None:
        """A backend that scores whole requests (the bi-encoder), one after the other."""
        for r in requests:
            r.first_batch = time.monotonic()
            try:
                if isinstance(backend, ManyQueryBackend):
                    result = backend.score_many(r.queries, r.documents, r.instruction)
                else:
                    result = [backend.score(q, r.documents, r.instruction) for q in r.queries]
            except Exception as e:
                r.deliver(e)
                continue
            # counted before the answer goes out: whoever awaits it sees the figures that include it
            for _ in r.queries:  # one call of the model per query; its padding is its own
                self.stats.batches += 1
                self.stats.pairs += len(r.documents)
                self.stats.last_batch_sizes.append(len(r.documents))
            r.deliver(result)

    def _prepare(self, backend: PairBackend) -> None:
        """The preparing thread: takes requests, tokenizes them, hands groups to inference."""
        try:
            while True:
                # One group ahead, no more: the queue is taken again only once the group made
                # from the last take is in the model, so searches that arrive meanwhile are
                # coalesced into one group rather than run as many small ones.
                self._ready_groups.join()
                if (requests := self._take()) is None:
                    return
                self._group(backend, requests)
        finally:
            self._ready_groups.put(None)

    def _group(self, backend: PairBackend, requests: list[_Request]) -> None:
        # In arrival order, requests are grouped until a group holds a batch worth of
        # tokens; each group's pairs are sorted by length together. Small searches share
        # batches, and a large one does not wait for every other search to finish first.
        group: list[_Item] = []
        tokens = 0
        for r in requests:
            if r.future.cancelled():
                continue
            try:
                encoded = [backend.encode(q, r.documents, r.instruction) for q in r.queries]
            except Exception as e:
                r.deliver(e)
                continue
            r.scores = [[float("-inf")] * len(r.documents) for _ in r.queries]
            r.remaining = sum(len(chunks) for per_query in encoded for chunks in per_query)
            if r.remaining == 0:
                r.deliver([[] for _ in r.queries])
            group += [
                (r, (j, d), e)
                for j, per_query in enumerate(encoded)
                for d, chunks in enumerate(per_query)
                for e in chunks
            ]
            tokens += sum(len(e[0]) for per_query in encoded for chunks in per_query for e in chunks)
            if tokens >= self.batch_tokens:
                self._ready_groups.put(group)  # waits while one group is ready and one is running
                group, tokens = [], 0
        if group:
            self._ready_groups.put(group)

    def _run_group(self, backend: PairBackend, items: list[_Item]) -> None:
        packed = bool(getattr(backend, "packed", False))  # one sequence per batch: no padding
        for batch in token_batches([len(e[0]) for _, _, e in items], self.batch_tokens, packed=packed):
            live = [items[i] for i in batch if not items[i][0].done and not items[i][0].future.cancelled()]
            if not live:
                continue
            started = time.perf_counter()
            now = time.monotonic()
            for r, _, _ in live:
                if r.first_batch is None:
                    r.first_batch = now
            try:
                out = forward_splitting_on_oom(backend.forward, [e for _, _, e in live])
            except Exception as e:
                log.warning("model %s failed on a batch of %d: %s", self.name, len(live), e)
                for r in {id(r): r for r, _, _ in live}.values():
                    r.deliver(e)
                continue
            self._account(live, time.perf_counter() - started, packed)
            for (r, (j, d), _), s in zip(live, out, strict=True):
                r.scores[j][d] = max(r.scores[j][d], s)
                r.remaining -= 1
                if r.remaining == 0:
                    r.deliver(r.scores)

    def _account(self, live: list[_Item], seconds: float, packed: bool = False) -> None:
        real = sum(len(e[0]) for _, _, e in live)
        padded = real if packed else max(len(e[0]) for _, _, e in live) * len(live)
        st = self.stats
        st.batches += 1
        st.pairs += len(live)
        st.real_tokens += real
        st.padded_tokens += padded
        st.last_batch_sizes.append(len(live))
        rate = padded / seconds if seconds > 0 else 0.0
        self._tokens_per_s = rate if not self._tokens_per_s else 0.8 * self._tokens_per_s + 0.2 * rate
