"""The queue and its admission rules without threads: joining, refusing, when to take, leaving."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.engine.protocol import Overloaded
from sidecar.engine.queue import Work, WorkQueue, estimate


def work(loop: asyncio.AbstractEventLoop, tokens: int, at: float = 0.0) -> Work:
    return Work(("q",), ["d"], None, loop.create_future(), loop, tokens, enqueued=at)


@pytest.fixture
def loop() -> asyncio.AbstractEventLoop:
    made = asyncio.new_event_loop()
    yield made
    made.close()


def test_a_full_queue_refuses_and_one_with_room_takes(loop: asyncio.AbstractEventLoop) -> None:
    q = WorkQueue("m", batch_tokens=1000, max_wait_s=0.002, max_queue=2)
    q.admit(work(loop, 10), 1.0)
    q.admit(work(loop, 10), 1.0)
    with pytest.raises(Overloaded, match="2 requests queued"):
        q.admit(work(loop, 10), 1.0)
    assert q.depth == 2 and q.queued_tokens == 20


def test_work_that_would_outlast_its_budget_is_refused_at_the_measured_rate(
    loop: asyncio.AbstractEventLoop,
) -> None:
    q = WorkQueue("m", batch_tokens=1000, max_wait_s=0.002, max_queue=100)
    q.admit(work(loop, 900), 0.01)  # nothing measured yet: nothing is known to be too slow
    q.measured(padded_tokens=1000, seconds=1.0)  # 1,000 tokens a second
    assert q.ahead_s(100) == pytest.approx(1.0)
    with pytest.raises(Overloaded):
        q.admit(work(loop, 100), 0.5)
    q.admit(work(loop, 100), 2.0)
    q.measured(padded_tokens=3000, seconds=1.0)
    assert q.tokens_per_s == pytest.approx(0.8 * 1000 + 0.2 * 3000)


def test_what_waits_is_taken_at_a_batch_worth_or_after_the_first_waited(
    loop: asyncio.AbstractEventLoop,
) -> None:
    q = WorkQueue("m", batch_tokens=100, max_wait_s=0.5, max_queue=10)
    q.admit(work(loop, 30, at=10.0), 1.0)
    assert q.until_take(10.2) == pytest.approx(0.3)  # the first has waited 0.2 of its 0.5 s
    assert q.until_take(11.0) == 0.0
    q.admit(work(loop, 80, at=10.1), 1.0)
    assert q.until_take(10.1) == 0.0  # a batch worth is there
    taken = q.take()
    assert len(taken) == 2 and not q.pending and q.queued_tokens == 0 and q.depth == 2
    taken[0].first_batch = 11.0
    assert q.depth == 1  # in a forward pass: no longer waiting
    for w in taken:
        q.leave(w)
    assert q.depth == 0 and not q.taken


def test_cancelled_work_leaves_and_is_not_taken(loop: asyncio.AbstractEventLoop) -> None:
    q = WorkQueue("m", batch_tokens=100, max_wait_s=0.5, max_queue=10)
    gone, kept = work(loop, 40), work(loop, 40)
    q.admit(gone, 1.0)
    q.admit(kept, 1.0)
    gone.future.cancel()
    assert q.take() == [kept]
    left = work(loop, 25)
    q.admit(left, 1.0)
    q.leave(left)  # timed out before the model took it
    assert not q.pending and q.queued_tokens == 0


def test_the_estimate_is_bounded_by_the_models_length() -> None:
    assert estimate(["abc"], ["x" * 30]) == 1 + 64 + 10
    assert estimate(["q"], ["x" * 10_000], max_length=512) == 512
    assert estimate(["a", "b"], ["c", "d", "e"]) == 6 * 64


def test_a_queue_emptied_while_the_thread_waits_is_taken_at_once(loop: asyncio.AbstractEventLoop) -> None:
    q = WorkQueue("m", batch_tokens=100, max_wait_s=0.5, max_queue=10)
    alone = work(loop, 10, at=10.0)
    q.admit(alone, 1.0)
    assert q.until_take(10.1) > 0  # the thread waits for more to come
    q.leave(alone)  # meanwhile the search timed out
    assert q.until_take(10.2) == 0.0 and q.take() == []
