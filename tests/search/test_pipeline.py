"""The pipeline's run without HTTP: the widened search, its refusal asked again as the client
sent it, the cluster's own answer passed back, through a fake Upstream."""

from __future__ import annotations

from sidecar.search import record
from sidecar.search.cluster import Answer
from sidecar.search.pipeline import run
from sidecar.vocab import Reason, Status
from tests.search.test_rerank import FakeUpstream, WordScorer, hits, plan, route


async def test_a_window_is_reranked_and_the_answer_it_came_in_is_kept() -> None:
    compiled = route(WordScorer("gpu"))
    p = plan(compiled, {"query": {"match": {"text": "gpu"}}, "size": 2})
    first = Answer(200, hits(["cpu", "gpu"]), wire="the widened answer", took_ms=3.0)
    event = record.new_event("kb", {})
    result = await run(compiled, p, event, FakeUpstream(first=first))
    assert result.outcome.status is Status.APPLIED and result.answer is first
    assert result.page is not None and [h["_id"] for h in result.page["hits"]["hits"]] == ["1", "0"]
    assert event.timings.upstream_ms == 3.0


async def test_a_refused_widened_search_is_asked_again_as_sent() -> None:
    compiled = route(WordScorer("gpu"))
    p = plan(compiled, {"query": {"match": {"text": "gpu"}}, "size": 2})
    cluster = FakeUpstream(first=Answer(400), again=Answer(200, hits(["cpu"]), wire="as sent"))
    result = await run(compiled, p, record.new_event("kb", {}), cluster)
    assert cluster.asked == ["widened", "as sent"]
    assert (result.outcome.status, result.outcome.reason) == (Status.FALLBACK, Reason.WIDEN_REFUSED)
    assert result.page is None and result.answer is not None and result.answer.wire == "as sent"


async def test_what_is_not_a_window_goes_back_as_it_came() -> None:
    compiled = route(WordScorer("gpu"))
    p = plan(compiled, {"query": {"match": {"text": "gpu"}}, "size": 2})
    for answer, reason in [
        (Answer(503, wire="busy"), Reason.UPSTREAM_STATUS),
        (Answer(200, {"error": "x"}, item=True, wire="item"), Reason.UPSTREAM_ERROR),
    ]:
        result = await run(compiled, p, record.new_event("kb", {}), FakeUpstream(first=answer))
        assert (result.outcome.status, result.outcome.reason) == (Status.BYPASS, reason)
        assert result.answer is answer and result.page is None


async def test_no_answer_from_the_cluster_is_unavailable() -> None:
    compiled = route(WordScorer("gpu"))
    p = plan(compiled, {"query": {"match": {"text": "gpu"}}, "size": 2})
    result = await run(compiled, p, record.new_event("kb", {}), FakeUpstream())
    assert result.outcome.reason is Reason.UPSTREAM_UNAVAILABLE and result.answer is None
