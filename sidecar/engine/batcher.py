"""The batcher: the one bridge between the event loop and a model's inference thread.

Callers ``await score(...)``. Requests queue up; a preparing thread takes everything that
arrived within ``max_wait_ms`` of the first (or until ``batch_tokens`` worth is waiting) and
tokenizes it into groups of about ``batch_tokens`` tokens; the inference thread sorts each
group's pairs by length and runs them in batches of at most ``batch_tokens`` (padded) tokens,
so pairs of concurrent searches share forward passes. The two threads overlap: the next
group is tokenized while the current one is in the model (the tokenizer releases the GIL),
and at most one group waits ready (the queue is taken again only once it is in the model, so
searches that arrive meanwhile still share batches). Results go back with
``loop.call_soon_threadsafe``. The queue and its admission rules are sidecar/engine/queue.py
(pure, tested without threads): a request that would wait past its budget fails at once
(``Overloaded``) so the proxy falls back instead of queueing; a cancelled request leaves the
queue. An exception reaches exactly the requests whose pairs were in the failing batch.
"""

from __future__ import annotations

import asyncio
import logging
import queue as ready_queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from sidecar.engine.pairs import forward_splitting_on_oom, token_batches
from sidecar.engine.protocol import (
    Backend,
    Encoded,
    GroupBackend,
    ManyQueryBackend,
    ModelTimeout,
    Overloaded,
    PairBackend,
    Scored,
    ScoreRequest,
)
from sidecar.engine.queue import Work, WorkQueue, estimate
from sidecar.engine.stats import BatchStats

# The inference thread gives up the GIL for every C call (ONNX Runtime, torch, the tokenizer) and
# must take it back after each; while the event loop runs Python, CPython makes it wait for the
# switch interval, 5 ms by default: under load every forward pass ended up to 5 ms late. At
# 0.5 ms the embedded default served 5-8% more searches at 32 clients (bench/cpu_curve.py);
# threads that do not ask for the GIL (pass-through traffic) are not affected.
SWITCH_INTERVAL_S = 0.0005

log = logging.getLogger(__name__)

# re-exported: the errors a caller of score catches, and the figures
__all__ = ["BatchStats", "Batcher", "ModelTimeout", "Overloaded"]


_Item = tuple[Work, tuple[int, int], Encoded]  # a request, (query, document), one encoded pair


class Batcher:
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
        self.stats = BatchStats()
        self.backend: Backend | None = None
        self.queue = WorkQueue(name, batch_tokens, max_wait_ms / 1000, max_queue)  # under _cond
        self._ready_groups: ready_queue.Queue[list[_Item] | None] = ready_queue.Queue(
            maxsize=1 if prepare_ahead else 0
        )
        self._cond = threading.Condition()
        self._stopping = False
        self._ready: asyncio.Future[Backend] | None = None
        self._thread = threading.Thread(target=self._main, name=f"inference-{name}", daemon=True)

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the model: queued, or tokenized and not yet in a forward pass."""
        return self.queue.depth

    async def start(self) -> Backend:
        """Start the thread, build and warm up the model there; return it."""
        loop = asyncio.get_running_loop()
        if sys.getswitchinterval() > SWITCH_INTERVAL_S:
            sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._ready = loop.create_future()
        self._loop = loop
        self._thread.start()
        return await self._ready

    async def aclose(self) -> None:
        """``stop`` off the event loop."""
        await asyncio.to_thread(self.stop)

    def info(self) -> dict[str, Any]:
        """What the health endpoint shows of this model."""
        runtime: dict[str, Any] = {}
        if self.backend is not None:
            runtime["runtime"] = getattr(self.backend, "runtime", "torch")
            if problem := getattr(self.backend, "runtime_problem", None):
                runtime["runtime_problem"] = problem  # why not ONNX Runtime, where it was asked for
        return {
            "backend": type(self.backend).__name__ if self.backend else None,
            **runtime,
            "queue_depth": self.queue_depth,
            "batches": self.stats.batches,
            "padding_waste": round(self.stats.padding_waste, 4),
            **(
                {
                    "forwards": self.stats.forwards,
                    "forward_queries": self.stats.forward_queries,
                    "queries_per_forward": round(self.stats.forward_queries / self.stats.forwards, 2),
                }
                if self.stats.forwards
                else {}
            ),
        }

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # event loop side
    async def score(self, request: ScoreRequest) -> list[Scored]:
        """The documents against every query as one piece of work: one wait in the queue, their
        pairs sorted and batched together; with ``queue_ms`` (waiting for the thread) and
        ``model_ms`` (forward passes)."""
        if not request.documents:
            return [Scored([]) for _ in request.queries]
        return await self._submit(request.queries, request.documents, request.instruction, request.timeout_s)

    async def _submit(
        self,
        queries: tuple[str, ...],
        documents: Sequence[str],
        instruction: str | None,
        timeout_s: float,
    ) -> list[Scored]:
        loop = asyncio.get_running_loop()
        est = estimate(queries, documents, getattr(self.backend, "max_length", 512))
        request = Work(queries, documents, instruction, loop.create_future(), loop, est)
        with self._cond:
            try:
                self.queue.admit(request, timeout_s)
            except Overloaded:
                self.stats.overloaded += 1
                raise
            self._cond.notify()
        try:
            result = await asyncio.wait_for(request.future, timeout_s)
            if request.finished is None:
                return [Scored(r) for r in result]
            start = request.first_batch or request.finished
            queue_ms, model_ms = (start - request.enqueued) * 1000, (request.finished - start) * 1000
            batch, tokens = request.batch or None, request.tokens or None
            return [Scored(r, queue_ms, model_ms, batch, tokens) for r in result]
        except asyncio.TimeoutError:
            raise ModelTimeout(f"model {self.name!r} took longer than {timeout_s * 1000:.0f} ms") from None
        finally:
            if not request.future.done():
                request.future.cancel()
            with self._cond:
                self.queue.leave(request)

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
            grouped = isinstance(backend, GroupBackend)  # asked once: a protocol check is slow
            while (requests := self._take()) is not None:
                self._run_whole(backend, requests, grouped)
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

    def _take(self) -> list[Work] | None:
        with self._cond:
            while not self.queue.pending:
                if self._stopping:
                    return None
                self._cond.wait()
            while not self._stopping and (left := self.queue.until_take(time.monotonic())) > 0:
                self._cond.wait(left)
            return self.queue.take()

    def _run_whole(self, backend: Backend, requests: list[Work], grouped: bool) -> None:
        """A backend that scores whole requests: every request taken in one pass where it can
        (a group backend, the bi-encoder: concurrent searches share the forward), else one
        after the other."""
        live = [r for r in requests if not r.future.cancelled()]
        if grouped and live:
            group = cast(GroupBackend, backend)
            now = time.monotonic()
            for r in live:
                r.first_batch = now
            try:
                results = group.score_group([(r.queries, r.documents, r.instruction) for r in live])
            except Exception as e:  # the pass failed: every request in it gets the error
                log.warning("model %s failed on %d searches together: %s", self.name, len(live), e)
                for r in live:
                    r.deliver(e)
                return
            # counted before the answers go out: whoever awaits one sees the figures that include it
            self.stats.forwards += 1
            queries = sum(len(r.queries) for r in live)
            self.stats.forward_queries += queries
            for r in live:
                r.batch = queries
                self._count_whole(r)
            for r, result in zip(live, results, strict=True):
                r.deliver(result)
            return
        for r in live:
            r.first_batch = time.monotonic()
            try:
                if isinstance(backend, ManyQueryBackend):
                    result = backend.score_many(r.queries, r.documents, r.instruction)
                else:
                    result = [backend.score(q, r.documents, r.instruction) for q in r.queries]
            except Exception as e:
                r.deliver(e)
                continue
            r.batch = len(r.queries)
            self._count_whole(r)
            r.deliver(result)

    def _count_whole(self, r: Work) -> None:
        for _ in r.queries:  # one column of the scores per query; its padding is its own
            self.stats.batches += 1
            self.stats.pairs += len(r.documents)
            self.stats.last_batch_sizes.append(len(r.documents))

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

    def _group(self, backend: PairBackend, requests: list[Work]) -> None:
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
            for r, _, encoded in live:
                r.batch = max(r.batch, len(live))
                r.tokens += len(encoded[0])
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
        self.queue.measured(padded, seconds)
