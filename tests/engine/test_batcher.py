"""The batcher: coalescing, token budget, length order, waiting, overload, cancellation, failures."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from sidecar.engine.batcher import Batcher, ModelTimeout, Overloaded
from sidecar.engine.protocol import Encoded, PairBackend, ScoreRequest
from sidecar.engine.score_cache import CachedScorer, score_key, score_keys
from tests.engine.scoring import each, scores_of, timed


class RecordingBackend:
    """A pair backend whose score is a pure function of the text; it records every batch it runs."""

    name = "recording"
    max_length = 512

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail_on: str | None = None
        self.oom_above: int | None = None

    def encode(self, query: str, documents: Sequence[str], instruction: str | None) -> list[list[Encoded]]:
        return [[([ord(c) for c in f"{query}|{d}"], None)] for d in documents]

    def forward(self, batch: Sequence[Encoded]) -> list[float]:
        self.gate.wait(10)
        if self.oom_above is not None and len(batch) > self.oom_above:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        texts = ["".join(chr(i) for i in ids) for ids, _ in batch]
        if self.fail_on and any(self.fail_on in t for t in texts):
            raise RuntimeError("device-side assert triggered")
        self.batches.append([len(ids) for ids, _ in batch])
        return [expected(t) for t in texts]

    def score(self, query: str, documents: Sequence[str], instruction: str | None = None) -> list[float]:
        return [expected(f"{query}|{d}") for d in documents]

    def count_tokens(self, text: str) -> int:
        return len(text)

    def warm_up(self) -> None:
        return None


def expected(text: str) -> float:
    return (sum(map(ord, text)) % 997) / 997


MODE = {"prepare_ahead": True}


@pytest.fixture(autouse=True, params=[True, False], ids=["ahead", "one-thread"])
def _mode(request: pytest.FixtureRequest) -> None:
    """Every test through ``_batcher`` runs with tokenizing ahead and with one thread."""
    MODE["prepare_ahead"] = request.param


async def _batcher(backend: RecordingBackend, **kw: object) -> Batcher:
    b = Batcher("m", lambda: backend, **{**MODE, **kw})  # type: ignore[arg-type]
    await b.start()
    backend.batches.clear()
    return b


def test_recording_backend_is_a_pair_backend() -> None:
    assert isinstance(RecordingBackend(), PairBackend)


async def test_concurrent_searches_share_batches_within_the_token_budget() -> None:
    backend = RecordingBackend()
    b = await _batcher(backend, batch_tokens=400, max_wait_ms=50)
    try:
        docs = [[f"doc {i}-{j} " + "x" * (j % 2) for j in range(6)] for i in range(8)]
        results = await asyncio.gather(*(scores_of(b, f"query {i}", docs[i], None, 5.0) for i in range(8)))
        for i in range(8):
            assert results[i] == [expected(f"query {i}|{d}") for d in docs[i]]
        assert len(backend.batches) < 8, "pairs of different searches must share forward passes"
        assert sum(len(x) for x in backend.batches) == 48
        for sizes in backend.batches:
            assert max(sizes) * len(sizes) <= 400
            assert sizes == sorted(sizes)
        assert b.stats.padding_waste < 0.2
        backend.batches.clear()
        docs = [f"d{j} " + "x" * (j * 13 % 37) for j in range(40)]
        await scores_of(b, "one search", docs, None, 5.0)
        flat = [n for sizes in backend.batches for n in sizes]
        assert flat == sorted(flat), "a search's pairs run shortest first"
        assert len(backend.batches) > 1
    finally:
        b.stop()


async def test_a_lone_request_waits_at_most_max_wait() -> None:
    backend = RecordingBackend()
    b = await _batcher(backend, max_wait_ms=150)
    try:
        started = time.monotonic()
        await scores_of(b, "q", ["a", "b"], None, 5.0)
        waited = time.monotonic() - started
        assert 0.1 <= waited < 2.0
    finally:
        b.stop()


async def test_a_full_budget_does_not_wait() -> None:
    backend = RecordingBackend()
    b = await _batcher(backend, batch_tokens=256, max_wait_ms=3000)
    try:
        started = time.monotonic()
        await scores_of(b, "q", ["y" * 300] * 3, None, 10.0)
        assert time.monotonic() - started < 2.0
    finally:
        b.stop()


async def test_overload_fails_fast() -> None:
    backend = RecordingBackend()
    b = await _batcher(backend, max_queue=1, max_wait_ms=0)
    try:
        backend.gate.clear()
        first = asyncio.ensure_future(scores_of(b, "q", ["busy"], None, 5.0))
        await asyncio.sleep(0.1)  # the thread is inside forward, blocked
        second = asyncio.ensure_future(scores_of(b, "q", ["queued"], None, 5.0))
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded):
            await scores_of(b, "q", ["one too many"], None, 5.0)
        backend.gate.set()
        await asyncio.gather(first, second)
        b.queue.tokens_per_s = 10.0  # as if measured: the next request would wait far past its budget
        with pytest.raises(Overloaded):
            await scores_of(b, "q", ["z" * 400] * 10, None, 0.5)
        assert b.stats.overloaded == 2
    finally:
        backend.gate.set()
        b.stop()


async def test_a_cancelled_request_leaves_the_queue() -> None:
    backend = RecordingBackend()
    b = await _batcher(backend, max_wait_ms=0)
    try:
        backend.gate.clear()
        first = asyncio.ensure_future(scores_of(b, "q", ["busy"], None, 5.0))
        await asyncio.sleep(0.1)
        with pytest.raises(ModelTimeout):
            await scores_of(b, "q", ["abandoned"], None, 0.1)
        assert b.queue_depth == 0
        backend.gate.set()
        await first
        await scores_of(b, "q", ["after"], None, 5.0)
        seen = [n for sizes in backend.batches for n in sizes]
        assert len("q|abandoned") not in seen
    finally:
        backend.gate.set()
        b.stop()


async def test_an_exception_reaches_exactly_the_affected_requests() -> None:
    backend = RecordingBackend()
    b = await _batcher(backend, batch_tokens=8, max_wait_ms=100)  # one pair per batch
    try:
        backend.fail_on = "boom"
        ok, bad = await asyncio.gather(
            scores_of(b, "q", ["fine", "also fine"], None, 5.0),
            scores_of(b, "q", ["fine too", "boom"], None, 5.0),
            return_exceptions=True,
        )
        assert ok == [expected("q|fine"), expected("q|also fine")]
        assert isinstance(bad, RuntimeError) and "device-side assert" in str(bad)
    finally:
        b.stop()


async def test_out_of_memory_halves_the_batch() -> None:
    backend = RecordingBackend()
    b = await _batcher(backend, max_wait_ms=0)
    try:
        backend.oom_above = 2
        docs = [f"d{i}" for i in range(8)]
        assert await scores_of(b, "q", docs, None, 5.0) == [expected(f"q|{d}") for d in docs]
        assert all(len(x) <= 2 for x in backend.batches) and sum(map(len, backend.batches)) == 8
    finally:
        b.stop()


async def test_the_score_cache_serves_repeats() -> None:
    backend = RecordingBackend()
    b = await _batcher(backend, max_wait_ms=0)
    cached = CachedScorer(b, 50_000)
    try:
        first = await scores_of(cached, "q", ["a", "b", "c"], None, 5.0)
        runs = len(backend.batches)
        assert await scores_of(cached, "q", ["c", "a"], None, 5.0) == [first[2], first[0]]
        assert len(backend.batches) == runs
        await scores_of(cached, "q", ["a"], "another instruction", 5.0)
        assert len(backend.batches) == runs + 1, "the instruction is part of the key"
        assert cached.stats.cache_hits == 2
    finally:
        b.stop()


async def test_the_score_cache_fills_each_querys_holes_once() -> None:
    """Two queries (a search's variants) with different documents cached: the documents either
    lacks go to the model once, for both, and every score comes back in its place."""
    backend = RecordingBackend()
    b = await _batcher(backend, max_wait_ms=0)
    cached = CachedScorer(b, 100)
    try:
        await scores_of(cached, "q1", ["a"], None, 5.0)
        await scores_of(cached, "q2", ["b"], None, 5.0)
        runs = len(backend.batches)
        got = await cached.score(ScoreRequest(queries=("q1", "q2"), documents=("a", "b", "c")))
        assert [t.scores for t in got] == [[expected(f"{q}|{d}") for d in "abc"] for q in ("q1", "q2")]
        # a, b and c each lack a score for some query: 3 documents for both queries, in one request
        assert sum(len(batch) for batch in backend.batches[runs:]) == 6
        hits = cached.stats.cache_hits
        again = await cached.score(ScoreRequest(queries=("q2", "q1"), documents=("c", "a")))
        assert [t.scores for t in again] == [[expected(f"{q}|{d}") for d in "ca"] for q in ("q2", "q1")]
        assert (
            sum(len(batch) for batch in backend.batches[runs:]) == 6 and cached.stats.cache_hits == hits + 4
        )
    finally:
        b.stop()


def test_score_keys_are_what_the_fleet_shares() -> None:
    """The keys are the fleet's shared tier's too: a row of ``score_keys`` is ``score_key`` of
    each pair, and the bytes stay what earlier releases wrote (a pinned digest)."""
    rows = score_keys("m", "an instruction", ["q", "é \ud800"], ["a", "", "long " * 50])
    assert rows == [
        [score_key("m", "an instruction", q, d) for d in ["a", "", "long " * 50]] for q in ["q", "é \ud800"]
    ]
    assert score_key("m", None, "q", "d").hex() == "d8990c2a51ad1c2534375d76618eebea"
    assert score_key("m", "", "q", "d") == score_key("m", None, "q", "d")
    assert score_key("m", None, "qd", "") != score_key("m", None, "q", "d")


async def test_a_model_that_fails_to_load_fails_start() -> None:
    def broken() -> RecordingBackend:
        raise OSError("no such model directory")

    b = Batcher("m", broken)  # type: ignore[arg-type]
    with pytest.raises(OSError, match="no such model"):
        await b.start()


async def test_timings_come_back_with_the_scores() -> None:
    backend = RecordingBackend()
    b = await _batcher(backend, max_wait_ms=50)
    cached = CachedScorer(b, 100)  # the score cache in front of it, as make_scorer puts it
    try:
        first = await timed(cached, "q", ["a", "b"], None, 5.0)
        assert first.scores == [expected("q|a"), expected("q|b")]
        assert first.queue_ms is not None and first.model_ms is not None
        assert 40 <= first.queue_ms < 2000 and 0 <= first.model_ms < 2000  # it waited max_wait_ms for company
        again = await timed(cached, "q", ["a", "b"], None, 5.0)
        assert (
            again.scores == first.scores and again.queue_ms is None and again.model_ms is None
        )  # all cached
    finally:
        b.stop()


async def test_a_whole_request_backend_is_counted_too() -> None:
    """The bi-encoder scores whole requests: each is one call of the model, its pairs counted."""

    class Whole:
        name = "whole"

        def score(self, query: str, documents: Sequence[str], instruction: str | None = None) -> list[float]:
            return [expected(f"{query}|{d}") for d in documents]

        def count_tokens(self, text: str) -> int:
            return len(text)

        def warm_up(self) -> None:
            return None

    b = Batcher("m", Whole)  # type: ignore[arg-type]
    await b.start()
    try:
        await scores_of(b, "q", ["a", "b", "c"], None, 5.0)
        await scores_of(b, "q", ["d"], None, 5.0)
        assert (b.stats.batches, b.stats.pairs, list(b.stats.last_batch_sizes)) == (2, 4, [3, 1])
    finally:
        b.stop()


async def test_a_query_and_its_variants_are_one_request() -> None:
    """The pairs of every query share the forward passes, and wait in the queue once."""
    backend = RecordingBackend()
    b = await _batcher(backend, max_wait_ms=0)
    try:
        out = await each(b, ["q1", "q2", "q3"], ["a", "bb"], None, 5.0)
        assert [o.scores for o in out] == [
            [expected(f"{q}|a"), expected(f"{q}|bb")] for q in ("q1", "q2", "q3")
        ]
        assert sum(map(len, backend.batches)) == 6  # the six pairs sorted by length together
        assert len({(o.queue_ms, o.model_ms) for o in out}) == 1  # one wait, one piece of work
        cached = CachedScorer(b, 100)
        again = await each(cached, ["q1", "q2"], ["a", "c"], None, 5.0)
        assert [o.scores for o in again] == [[expected(f"{q}|a"), expected(f"{q}|c")] for q in ("q1", "q2")]
        assert sum(map(len, backend.batches)) == 6 + 4  # the cache was empty: both documents, both queries
        await each(cached, ["q1", "q2", "q3"], ["a", "d"], None, 5.0)
        assert (
            sum(map(len, backend.batches)) == 10 + 3 + 3
        )  # "a" only for q3 missing, "d" for all: 2 docs x 3
        assert (await each(cached, ["q1", "q2"], ["a", "c"], None, 5.0))[0].queue_ms is None  # all cached
    finally:
        b.stop()


class OverlapProbe(RecordingBackend):
    """Records, for each forward pass, whether another search was tokenized while it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.encoding = threading.Event()
        self.overlapped: list[bool] = []
        self.wait_s = 5.0

    def encode(self, query: str, documents: Sequence[str], instruction: str | None) -> list[list[Encoded]]:
        if query == "second":
            self.encoding.set()
        return super().encode(query, documents, instruction)

    def forward(self, batch: Sequence[Encoded]) -> list[float]:
        first = any("first|" in "".join(map(chr, ids)) for ids, _ in batch)
        if first:  # the first search's pass waits (bounded) for the second to be tokenized
            self.overlapped.append(self.encoding.wait(self.wait_s))
        return super().forward(batch)


async def test_the_next_search_is_tokenized_while_the_model_runs() -> None:
    backend = OverlapProbe()
    if not MODE["prepare_ahead"]:
        backend.wait_s = 0.5  # it cannot happen: waited out
    b = await _batcher(backend, batch_tokens=64, max_wait_ms=0)
    try:
        first = asyncio.ensure_future(scores_of(b, "first", ["a"], None, 30.0))
        await asyncio.sleep(0.05)  # the first search is taken and in its forward pass
        second = await scores_of(b, "second", ["b"], None, 30.0)
        assert await first == [expected("first|a")] and second == [expected("second|b")]
        assert backend.overlapped == [MODE["prepare_ahead"]]
    finally:
        b.stop()


async def test_searches_that_arrive_while_the_model_runs_share_a_batch() -> None:
    """Tokenizing ahead takes one group, no more: the rest wait and are coalesced."""
    backend = RecordingBackend()
    b = await _batcher(backend, max_wait_ms=0)
    try:
        backend.gate.clear()
        first = asyncio.ensure_future(scores_of(b, "q", ["a"], None, 10.0))
        await asyncio.sleep(0.1)  # in its forward pass
        second = asyncio.ensure_future(scores_of(b, "q", ["bb"], None, 10.0))
        await asyncio.sleep(0.1)  # tokenized ahead, waiting ready
        later = []
        for d in ("c" * 38, "d" * 39):  # one after the other, each given time to be taken alone
            later.append(asyncio.ensure_future(scores_of(b, "q", [d], None, 10.0)))
            await asyncio.sleep(0.1)
        backend.gate.set()
        await asyncio.gather(first, second, *later)
        assert [40, 41] in [sorted(sizes) for sizes in backend.batches]  # lengths of q|ccc.., q|ddd..
    finally:
        backend.gate.set()
        b.stop()


async def test_a_search_that_leaves_while_the_thread_waits_for_more_does_not_stop_the_model() -> None:
    backend = RecordingBackend()
    b = await _batcher(backend, max_wait_ms=300)  # the thread waits up to 300 ms for company
    try:
        with pytest.raises(ModelTimeout):
            await scores_of(b, "q", ["gone before the batch"], None, 0.05)
        await asyncio.sleep(0.4)  # the thread's wait ends on an empty queue
        assert await scores_of(b, "q", ["served"], None, 5.0) == [expected("q|served")]
    finally:
        await b.aclose()


async def test_a_local_model_takes_the_gil_back_within_half_a_millisecond() -> None:
    """The inference thread asks for the GIL after every C call; the default 5 ms switch interval
    held each forward pass up that long behind a busy event loop."""
    import sys

    from sidecar.engine.batcher import SWITCH_INTERVAL_S

    default = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    try:
        b = await _batcher(RecordingBackend(), max_wait_ms=0)
        b.stop()
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_S) and SWITCH_INTERVAL_S <= 0.0005
    finally:
        sys.setswitchinterval(default)
