"""The default fusion through a real sidecar: the cluster's order counts only where it can tell
anything; ``_score`` on the model's [0, 1] scale; the diagnostic flags on that scale."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from osmem_server import OsmemServer

from tests.conftest import RunningSidecar, sidecar_config

LORA = "what LoRA rank should I pick for fine-tuning"


@pytest.fixture(scope="module")
def fused(osmem: OsmemServer) -> Iterator[RunningSidecar]:
    route: dict[str, Any] = {"model": "minilm", "fields": ["title", "text"], "template": "{title}\n{text}"}
    config = sidecar_config(
        osmem.url,
        routes=[
            # fewer than the matching hits: full windows; the cluster's ranks weigh (rrf_k 1, alpha 0.3)
            {**route, "indices": ["kb"], "window": 3, "rrf_k": 1, "fusion_alpha": 0.3},
            {**route, "indices": ["docs-*"], "window": 500},  # more than the index holds
            {**route, "indices": ["plain"], "window": 6, "fusion": "replace"},
        ],
    )
    running = RunningSidecar(config)
    yield running
    running.close()


def _window(direct: httpx.Client, index: str, body: dict[str, Any], size: int) -> list[dict[str, Any]]:
    return list(
        direct.post(f"/{index}/_search", json={**body, "from": 0, "size": size}).json()["hits"]["hits"]
    )


def _model(fused: RunningSidecar, query: str, hits: list[dict[str, Any]]) -> list[float]:
    return fused.scores("minilm", query, [f"{h['_source']['title']}\n{h['_source']['text']}" for h in hits])


QUERIES = (
    LORA,
    "memory of the GPU",
    "rank and memory",
    "the type of a string",
    "restart the container of a pod",
)


def test_a_full_window_is_fused_with_the_clusters_ranks(fused: RunningSidecar, direct: httpx.Client) -> None:
    disagreed = 0
    for query in QUERIES:
        body = {"query": {"match": {"text": query}}}
        window = _window(direct, "kb", body, 3)
        assert direct.post("/kb/_search", json=body).json()["hits"]["total"]["value"] > 3
        scores = _model(fused, query, window)
        by_model = sorted(range(3), key=lambda i: (-scores[i], i))
        fused_score = [0.3 * scores[i] + 0.7 * 1 / (1 + i) for i in range(3)]
        expected = [window[i]["_id"] for i in sorted(range(3), key=lambda i: (-fused_score[i], i))]
        disagreed += expected != [window[i]["_id"] for i in by_model]
        r = httpx.post(f"{fused.url}/kb/_search", json={**body, "size": 3})
        hits = r.json()["hits"]["hits"]
        assert [h["_id"] for h in hits] == expected, query
        # _score: the model's scores from the highest down, along the fused order
        assert [h["_score"] for h in hits] == pytest.approx(sorted(scores, reverse=True))
        assert r.json()["hits"]["max_score"] == hits[0]["_score"]
        for h in hits:
            assert h["_rerank"]["score"] == pytest.approx(scores[[w["_id"] for w in window].index(h["_id"])])
    assert disagreed, "the cluster's ranks should count in some of these"


def test_a_window_holding_every_hit_follows_the_model(fused: RunningSidecar, direct: httpx.Client) -> None:
    body = {"query": {"match": {"text": LORA}}}
    window = _window(direct, "docs-1", body, 500)
    scores = _model(fused, LORA, window)
    expected = [window[i]["_id"] for i in sorted(range(len(window)), key=lambda i: (-scores[i], i))]
    hits = httpx.post(f"{fused.url}/docs-1/_search", json={**body, "size": 10}).json()["hits"]["hits"]
    assert [h["_id"] for h in hits] == expected[:10]


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ({"query": {"match_all": {}}}, {"X-Rerank-Query": LORA}),
        (
            {"query": {"bool": {"filter": [{"match": {"text": "memory rank lora"}}]}}},
            {"X-Rerank-Query": LORA},
        ),
        (
            {
                "query": {"constant_score": {"filter": {"match": {"text": "rank"}}}},
                "ext": {"rerank": {"query_context": {"query_text": LORA}}},
            },
            {},
        ),
    ],
)
def test_equal_cluster_scores_leave_the_order_to_the_model(
    fused: RunningSidecar, direct: httpx.Client, body: dict[str, Any], headers: dict[str, str]
) -> None:
    plain = {k: v for k, v in body.items() if k != "ext"}
    window = _window(direct, "kb", plain, 3)
    assert len(window) == 3 and len({h["_score"] for h in window}) == 1  # equal: storage order
    scores = _model(fused, LORA, window)
    expected = [window[i]["_id"] for i in sorted(range(3), key=lambda i: (-scores[i], i))]
    r = httpx.post(f"{fused.url}/kb/_search", json={**body, "size": 3}, headers=headers)
    assert r.headers["x-rerank"] == "applied"
    assert [h["_id"] for h in r.json()["hits"]["hits"]] == expected


def test_scores_and_flags_are_on_one_scale(fused: RunningSidecar) -> None:
    clear = httpx.post(f"{fused.url}/plain/_search", json={"query": {"match": {"text": LORA}}, "size": 6})
    hits = clear.json()["hits"]["hits"]
    assert all(0 <= h["_score"] <= 1 for h in hits) and hits[0]["_score"] > 0.5
    assert "x-rerank-flags" not in clear.headers
    vague = httpx.post(
        f"{fused.url}/plain/_search", json={"query": {"match": {"text": "is it the one"}}, "size": 6}
    )
    assert vague.headers["x-rerank"] == "applied" and "low" in vague.headers["x-rerank-flags"]


@pytest.mark.parametrize(("index", "fusion"), [("kb", "auto"), ("plain", "replace")])
def test_explain_says_how_the_shown_score_was_made(
    fused: RunningSidecar, direct: httpx.Client, index: str, fusion: str
) -> None:
    body = {"query": {"match": {"text": LORA}}, "explain": True, "size": 5}
    given = {h["_id"]: h for h in direct.post(f"/{index}/_search", json=body).json()["hits"]["hits"]}
    r = httpx.post(f"{fused.url}/{index}/_search", json=body, timeout=60)
    assert r.headers["x-rerank"] == "applied"
    hits = r.json()["hits"]["hits"]
    reranked = [h for h in hits if h["_rerank"]["score"] is not None]
    assert reranked
    for hit in reranked:
        e = hit["_explanation"]
        assert e["value"] == hit["_score"]  # the score shown, not the cluster's
        assert e["description"].startswith("rerank-sidecar: ") and f"(fusion {fusion}" in e["description"]
        model, cluster = e["details"]
        assert model["value"] == hit["_rerank"]["score"] and "model minilm" in model["description"]
        assert cluster["value"] == hit["_rerank"]["original_score"]
        assert f"rank {hit['_rerank']['original_rank']} " in cluster["description"]
        if hit["_id"] in given:  # the cluster's own explanation, nested as it gave it
            assert cluster["details"] == [given[hit["_id"]]["_explanation"]]
    past = [h for h in hits if h["_rerank"]["score"] is None]
    for hit in past:  # after the window (kb's is 3 hits): 0, below every reranked hit
        assert hit["_explanation"]["value"] == 0.0 == hit["_score"]
        assert "past the reranked window" in hit["_explanation"]["description"]
    if index == "kb":  # a window of 3 under a page of 5: two hits from past it
        assert len(past) == 2
    # without explain, no explanation is made up
    plain = httpx.post(f"{fused.url}/{index}/_search", json={**body, "explain": False}, timeout=60)
    assert all("_explanation" not in h for h in plain.json()["hits"]["hits"])
