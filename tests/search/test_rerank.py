"""The core of a search without HTTP: a window of hits, a scorer that scores by a word, and
a fake Upstream for the page past the window (the core reaches the cluster through it alone)."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.config import RouteConfig
from sidecar.engine.circuit import CircuitBreaker
from sidecar.engine.protocol import Scored, ScoreRequest
from sidecar.search import record
from sidecar.search.cluster import Answer, ClusterRefused
from sidecar.search.plan import SearchPlan, plan_search
from sidecar.search.rerank import finish
from sidecar.search.snapshot import CompiledRoute, ServedModel
from sidecar.vocab import Reason, Status


class WordScorer:
    """Scores a document 1.0 when it holds the word, else 0.1; ``fail`` raises instead;
    ``garbage`` answers None for every score (a fault the core meets after the model)."""

    name = "word"
    backend = None

    def __init__(self, word: str, fail: bool = False, garbage: bool = False) -> None:
        self.word, self.fail, self.garbage, self.asked = word, fail, garbage, 0

    async def score(self, request: ScoreRequest) -> list[Scored]:
        queries, documents = request.queries, request.documents
        self.asked += 1
        if self.fail:
            raise RuntimeError("the model is down")
        if self.garbage:
            return [Scored([None] * len(documents)) for _ in queries]  # type: ignore[list-item]
        return [Scored([1.0 if self.word in d else 0.1 for d in documents], 0.5, 1.5) for _ in queries]


class FakeUpstream:
    """A cluster that answers the widened search with ``first`` (and a second time with
    ``again``), and the page past the window with ``extra``; what it was asked is kept."""

    def __init__(
        self,
        extra: list[dict[str, Any]] | None = None,
        refuse: bool = False,
        first: Answer | None = None,
        again: Answer | None = None,
    ) -> None:
        self.extra, self.refuse, self.first, self.again = extra or [], refuse, first, again
        self.bodies: list[dict[str, Any]] = []
        self.asked: list[str] = []

    async def search(self, plan: SearchPlan) -> Answer | None:
        self.asked.append("widened")
        return self.first

    async def as_sent(self) -> Answer | None:
        self.asked.append("as sent")
        return self.again

    async def hits(self, body: dict[str, Any]) -> list[dict[str, Any]] | None:
        self.bodies.append(body)
        if self.refuse:
            raise ClusterRefused(Answer(400, {"error": "result window is too large"}))
        return self.extra


def route(scorer: WordScorer, **settings: Any) -> CompiledRoute:
    config = RouteConfig(
        name="kb", indices=["kb"], model="word", fields=["text"], fusion="replace", **settings
    )
    model = ServedModel("word", scorer, CircuitBreaker("word", 0, 1.0), None)  # type: ignore[arg-type]
    return CompiledRoute("kb", config, model, models={"word": model})


def hits(texts: list[str]) -> dict[str, Any]:
    return {
        "took": 1,
        "hits": {
            "total": {"value": len(texts), "relation": "eq"},
            "hits": [
                {"_id": str(i), "_score": 10.0 - i, "_source": {"text": t}} for i, t in enumerate(texts)
            ],
        },
    }


def plan(compiled: CompiledRoute, body: dict[str, Any]) -> SearchPlan:
    made = plan_search(compiled.config, body, [], {})
    assert isinstance(made, SearchPlan)
    return made


async def test_the_page_is_the_models_order_and_the_event_says_why() -> None:
    compiled = route(WordScorer("gpu"), window=4)
    p = plan(compiled, {"query": {"match": {"text": "gpu memory"}}, "size": 2})
    event = record.new_event("kb", {})
    page, outcome = await finish(compiled, p, hits(["cpu", "gpu one", "disk", "gpu two"]), event)
    assert [h["_id"] for h in page["hits"]["hits"]] == ["1", "3"]
    assert outcome.status is Status.APPLIED and outcome.model == "word"
    assert event.query == "gpu memory" and event.route == "kb" and event.window == 4
    assert [b.id for b in event.baseline] == ["0", "1", "2", "3"]
    assert [b.score for b in event.baseline] == [10.0, 9.0, 8.0, 7.0]  # the cluster's, not the page's
    assert [b.model_score for b in event.baseline] == [0.1, 1.0, 0.1, 1.0]
    assert [f.id for f in event.final][:2] == ["1", "3"]
    assert event.timings.queue_ms == 0.5 and event.timings.model_ms == 1.5


async def test_the_page_past_the_window_comes_through_the_upstream_it_is_given() -> None:
    compiled = route(WordScorer("gpu"), window=2)
    p = plan(compiled, {"query": {"match": {"text": "gpu"}}, "size": 4})
    cluster = FakeUpstream([{"_id": "x", "_score": 1.0, "_source": {"text": "later"}}])
    page, _ = await finish(compiled, p, hits(["cpu", "gpu"]), record.new_event("kb", {}), cluster)
    assert [h["_id"] for h in page["hits"]["hits"]] == ["1", "0", "x"]
    assert cluster.bodies and cluster.bodies[0]["from"] == 2  # asked for what follows the window


async def test_a_refusal_past_the_window_goes_to_the_adapter() -> None:
    compiled = route(WordScorer("gpu"), window=2)
    p = plan(compiled, {"query": {"match": {"text": "gpu"}}, "size": 4})
    with pytest.raises(ClusterRefused):
        await finish(compiled, p, hits(["cpu", "gpu"]), record.new_event("kb", {}), FakeUpstream(refuse=True))


async def test_a_model_that_fails_leaves_the_clusters_order_flagged() -> None:
    scorer = WordScorer("gpu", fail=True)
    compiled = route(scorer)
    p = plan(compiled, {"query": {"match": {"text": "gpu"}}, "size": 3})
    event = record.new_event("kb", {})
    page, outcome = await finish(compiled, p, hits(["cpu", "gpu", "disk"]), event)
    assert [h["_id"] for h in page["hits"]["hits"]] == ["0", "1", "2"]
    assert (outcome.status, outcome.reason) == (Status.FALLBACK, Reason.MODEL_ERROR)
    assert scorer.asked == 1 and event.final == [] and len(event.baseline) == 3


async def test_a_fault_of_the_core_serves_the_clusters_page_and_names_the_query() -> None:
    compiled = route(WordScorer("gpu", garbage=True))
    p = plan(compiled, {"query": {"match": {"text": "gpu"}}, "size": 2})
    event = record.new_event("kb", {})
    page, outcome = await finish(compiled, p, hits(["cpu", "gpu"]), event)
    assert (outcome.status, outcome.reason) == (Status.FALLBACK, Reason.SIDECAR_ERROR)
    assert [h["_id"] for h in page["hits"]["hits"]] == ["0", "1"]
    assert event.query == "gpu" and event.route == "kb"
