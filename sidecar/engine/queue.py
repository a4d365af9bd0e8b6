"""A local model's queue and its admission rules, without threads (as TEI keeps its queue apart
from inference): what a new request may join, when the model takes what waits, and how fast it
has been going. The batcher holds its lock around every call and owns the threads that wait."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from sidecar.engine.protocol import Overloaded

log = logging.getLogger(__name__)


@dataclass(eq=False)  # hashed by identity: the set of taken requests
class Work:
    """The documents against one or more queries (a search's query and its variants), on its
    way through the queue and the model: where its answer goes, and when it was where."""

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
    batch: int = 0  # the largest forward pass it was in: pairs (queries, for a whole backend)
    tokens: int = 0  # the tokens of its own pairs the model computed

    def deliver(self, result: list[list[float]] | BaseException) -> None:
        """Its answer (or the error of its batch), handed to its event loop once."""
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


def estimate(queries: Sequence[str], documents: Sequence[str], max_length: int = 512) -> int:
    """About how many tokens the pairs of a request hold (a third of a character each, the
    template's 64, at most the model's length), before it is tokenized."""
    return sum(min(len(q) // 3 + 64 + len(d) // 3, max_length) for q in queries for d in documents)


class WorkQueue:
    """What waits for one model, and the rules: a request joins unless the queue is full or the
    work ahead of it would outlast its budget (then ``Overloaded``: the search falls back at
    once instead of queueing); what waits is taken once ``batch_tokens`` worth is there or the
    first has waited ``max_wait_s``."""

    def __init__(self, name: str, batch_tokens: int, max_wait_s: float, max_queue: int) -> None:
        self.name = name
        self.batch_tokens = batch_tokens
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.pending: deque[Work] = deque()
        self.queued_tokens = 0
        self.taken: set[Work] = set()  # taken from the queue, not yet answered
        self.tokens_per_s = 0.0  # measured; 0 until the first batch

    @property
    def depth(self) -> int:
        """Requests waiting for the model: queued, or taken and not yet in a forward pass."""
        return len(self.pending) + sum(w.first_batch is None for w in list(self.taken))

    def ahead_s(self, est_tokens: int) -> float:
        """How long the work ahead of a new request (and its own) would take at the measured
        rate (0 before the first batch: nothing is known yet)."""
        work = self.queued_tokens + sum(w.est_tokens for w in self.taken) + est_tokens
        return work / self.tokens_per_s if self.tokens_per_s else 0.0

    def admit(self, work: Work, timeout_s: float) -> None:
        """Queue ``work``, or refuse it (Overloaded) when the queue is full or it would wait past
        its budget."""
        wait, waiting = self.ahead_s(work.est_tokens), self.depth
        if waiting >= self.max_queue or wait > timeout_s:
            raise Overloaded(
                f"model {self.name!r}: {waiting} requests queued, about {wait * 1000:.0f} ms of work"
            )
        self.pending.append(work)
        self.queued_tokens += work.est_tokens

    def until_take(self, now: float) -> float:
        """Seconds to wait before taking what is queued (0: take it now, also when what waited has
        left meanwhile: a timed-out or cancelled request leaves while the thread waits)."""
        if not self.pending or self.queued_tokens >= self.batch_tokens:
            return 0.0
        return max(0.0, self.pending[0].enqueued + self.max_wait_s - now)

    def take(self) -> list[Work]:
        """Everything queued that is still wanted, taken for the model."""
        taken = [w for w in self.pending if not w.future.cancelled()]
        self.pending.clear()
        self.queued_tokens = 0
        self.taken.update(taken)
        return taken

    def leave(self, work: Work) -> None:
        """``work`` is answered, timed out or cancelled: out of the queue and of the taken."""
        if work in self.pending:  # cancelled before the model took it
            self.pending.remove(work)
            self.queued_tokens -= work.est_tokens
        self.taken.discard(work)

    def measured(self, padded_tokens: int, seconds: float) -> None:
        """A forward pass of ``padded_tokens`` took ``seconds``: the rate admission goes by."""
        rate = padded_tokens / seconds if seconds > 0 else 0.0
        self.tokens_per_s = rate if not self.tokens_per_s else 0.8 * self.tokens_per_s + 0.2 * rate
