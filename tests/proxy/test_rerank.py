"""Searches on routed indices come back reordered by the model, paged from one window."""

from __future__ import annotations

import httpx
import pytest
from opensearchpy import AsyncOpenSearch, OpenSearch

from tests.conftest import CORPUS, RunningSidecar

QUERY = {"query": {"match": {"text": "what LoRA rank should I pick for fine-tuning"}}}


def _expected_order(
    sidecar: RunningSidecar, direct: httpx.Client, query_text: str, body: dict[str, object]
) -> list[str]:
    window = direct.post("/kb/_search", json={**body, "from": 0, "size": 12}).json()["hits"]["hits"]
    texts = [f"{h['_source']['title']}\n{h['_source']['text']}" for h in window]
    scores = sidecar.backend("minilm").score(query_text, texts)
    ranked = sorted(range(len(window)), key=lambda i: (-scores[i], i))
    return [window[i]["_id"] for i in ranked]


def test_search_is_reordered_by_the_model(
    sidecar: RunningSidecar, direct: httpx.Client, proxied: httpx.Client
) -> None:
    r = proxied.post("/kb/_search", json={**QUERY, "size": 5})
    assert r.status_code == 200
    assert r.headers["x-rerank"] == "applied"
    assert r.headers["x-rerank-model"] == "minilm"
    assert float(r.headers["x-rerank-took-ms"]) >= 0
    hits = r.json()["hits"]["hits"]
    expected = _expected_order(sidecar, direct, "what LoRA rank should I pick for fine-tuning", QUERY)
    assert [h["_id"] for h in hits] == expected[:5]
    baseline = [
        h["_id"] for h in direct.post("/kb/_search", json={**QUERY, "size": 5}).json()["hits"]["hits"]
    ]
    assert [h["_id"] for h in hits] != baseline, "the model should change this order"
    scores = [h["_score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert r.json()["hits"]["max_score"] == scores[0]
    for h in hits:
        assert set(h["_rerank"]) == {"score", "original_score", "original_rank"}
        assert h["_rerank"]["score"] == h["_score"]
    top = CORPUS[int(hits[0]["_id"])]["title"]
    assert "LoRA" in top


def test_total_and_aggregations_are_the_clusters(proxied: httpx.Client, direct: httpx.Client) -> None:
    body = {**QUERY, "size": 3, "aggs": {"n": {"value_count": {"field": "_id"}}}}
    a, b = direct.post("/kb/_search", json=body).json(), proxied.post("/kb/_search", json=body).json()
    assert b["hits"]["total"] == a["hits"]["total"]
    assert b["aggregations"] == a["aggregations"]


def test_pages_are_slices_of_one_window(proxied: httpx.Client) -> None:
    whole = [h["_id"] for h in proxied.post("/kb/_search", json={**QUERY, "size": 12}).json()["hits"]["hits"]]
    pages: list[str] = []
    for start in range(0, 12, 4):
        r = proxied.post("/kb/_search", json={**QUERY, "from": start, "size": 4})
        assert r.headers["x-rerank"] == "applied"
        pages += [h["_id"] for h in r.json()["hits"]["hits"]]
    assert pages == whole
    assert len(set(pages)) == len(pages)


def test_url_paging_parameters_override_the_body(proxied: httpx.Client) -> None:
    whole = [h["_id"] for h in proxied.post("/kb/_search", json={**QUERY, "size": 10}).json()["hits"]["hits"]]
    r = proxied.post("/kb/_search?from=2&size=3", json={**QUERY, "size": 9})
    assert [h["_id"] for h in r.json()["hits"]["hits"]] == whole[2:5]


@pytest.mark.parametrize(
    ("source", "expect"),
    [
        (["title"], {"title"}),
        (False, None),
        ({"includes": ["t*"], "excludes": ["text"]}, {"title"}),
        ({"excludes": ["title"]}, {"text"}),
        ("tag", set()),
    ],
)
def test_source_filtering_is_the_clients(
    proxied: httpx.Client, direct: httpx.Client, source: object, expect: set[str] | None
) -> None:
    body = {**QUERY, "size": 4, "_source": source}
    r = proxied.post("/kb/_search", json=body)
    assert r.headers["x-rerank"] == "applied"
    d = direct.post("/kb/_search", json=body).json()["hits"]["hits"]
    by_id = {h["_id"]: h for h in d}
    for h in r.json()["hits"]["hits"]:
        if expect is None:
            assert "_source" not in h
        else:
            assert set(h["_source"]) == expect
            if h["_id"] in by_id:
                assert h["_source"] == by_id[h["_id"]]["_source"]


def test_source_url_parameters(proxied: httpx.Client) -> None:
    r = proxied.post("/kb/_search?_source_includes=title", json={**QUERY, "size": 3})
    assert r.headers["x-rerank"] == "applied"
    assert all(set(h["_source"]) == {"title"} for h in r.json()["hits"]["hits"])
    r = proxied.post("/kb/_search?_source=false", json={**QUERY, "size": 3})
    assert all("_source" not in h for h in r.json()["hits"]["hits"])


def test_uri_search(proxied: httpx.Client) -> None:
    r = proxied.get("/kb/_search", params={"q": "text:lora AND rank", "size": "3"})
    assert r.status_code == 200
    assert r.headers["x-rerank"] == "applied"
    assert len(r.json()["hits"]["hits"]) == 3


def test_wildcard_index_route(proxied: httpx.Client) -> None:
    r = proxied.post("/docs-1/_search", json={**QUERY, "size": 2})
    assert r.headers["x-rerank"] == "applied"


def test_query_text_from_header_and_ext_rerank(proxied: httpx.Client) -> None:
    body = {"query": {"match_all": {}}, "size": 1}
    r = proxied.post("/kb/_search", json=body, headers={"X-Rerank-Query": "returning an item for a refund"})
    assert r.headers["x-rerank"] == "applied"
    assert r.json()["hits"]["hits"][0]["_source"]["title"] == "Returns within 30 days"
    body = {
        "query": {"match": {"text": {"query": "GPU out of memory"}}},
        "size": 1,
        "ext": {"rerank": {"query_context": {"query_text_path": "query.match.text.query"}}},
    }
    r = proxied.post("/kb/_search", json=body)
    assert r.headers["x-rerank"] == "applied", r.headers.get("x-rerank-reason")
    assert "memory" in r.json()["hits"]["hits"][0]["_source"]["text"].lower()


def test_ext_rerank_is_stripped_before_the_cluster(proxied: httpx.Client) -> None:
    body = {
        "query": {"match": {"text": "rank"}},
        "size": 2,
        "ext": {"rerank": {"query_context": {"query_text": "matrix rank in linear algebra"}}},
    }
    r = proxied.post("/kb/_search", json=body)
    assert r.status_code == 200  # osmem, like OpenSearch without the plugin, would reject ext.rerank
    assert r.json()["hits"]["hits"][0]["_source"]["title"] == "Rank of a matrix"


def test_annotations_can_be_turned_off(osmem: object) -> None:
    from tests.conftest import sidecar_config

    cfg = sidecar_config(osmem.url)  # type: ignore[attr-defined]
    routes = [{**cfg.routes[0].model_dump(), "annotate": False}]
    running = RunningSidecar(sidecar_config(osmem.url, routes=routes), backends={})  # type: ignore[attr-defined]
    try:
        r = httpx.post(running.url + "/kb/_search", json={**QUERY, "size": 2})
        assert r.headers["x-rerank"] == "applied"
        assert all("_rerank" not in h for h in r.json()["hits"]["hits"])
    finally:
        running.close()


def test_sync_client_search(sidecar: RunningSidecar) -> None:
    client = OpenSearch(hosts=[sidecar.url])
    res = client.search(index="kb", body={**QUERY, "size": 3})
    assert [h["_rerank"]["original_rank"] for h in res["hits"]["hits"]] != [1, 2, 3]


async def test_async_client_search_and_msearch(sidecar: RunningSidecar) -> None:
    client = AsyncOpenSearch(hosts=[sidecar.url])
    try:
        res = await client.search(index="kb", body={**QUERY, "size": 3})
        assert all("_rerank" in h for h in res["hits"]["hits"])
        ms = await client.msearch(
            body=[{"index": "kb"}, {**QUERY, "size": 2}, {"index": "plain"}, {**QUERY, "size": 2}]
        )
        assert "_rerank" in ms["responses"][0]["hits"]["hits"][0]
        assert "_rerank" not in ms["responses"][1]["hits"]["hits"][0]
    finally:
        await client.close()


def test_thresholds_cut_and_flags_through_the_proxy(osmem: object, direct: httpx.Client) -> None:
    from tests.conftest import sidecar_config

    cfg = sidecar_config(osmem.url)  # type: ignore[attr-defined]
    routes = [{**cfg.routes[0].model_dump(), "min_score": 0.3, "low_mean": 0.9}]
    running = RunningSidecar(sidecar_config(osmem.url, routes=routes), backends={})  # type: ignore[attr-defined]
    try:
        r = httpx.post(running.url + "/kb/_search", json={**QUERY, "size": 12})
        assert r.headers["x-rerank"] == "applied"
        hits = r.json()["hits"]["hits"]
        window = direct.post("/kb/_search", json={**QUERY, "size": 12}).json()["hits"]["hits"]
        texts = [f"{h['_source']['title']}\n{h['_source']['text']}" for h in window]
        scores = running.backend("minilm").score("what LoRA rank should I pick for fine-tuning", texts)
        below = sum(1 for s in scores if s < 0.3)
        assert below > 0, "the query should leave some hits under 0.3"
        assert int(r.headers["x-rerank-cut"]) == below
        assert len(hits) == len(window) - below
        assert all(h["_score"] >= 0.3 for h in hits)
        assert "low" in r.headers["x-rerank-flags"].split(",")
    finally:
        running.close()


def test_elasticsearchs_reranker_retriever_is_honoured_in_front_of_opensearch(
    sidecar: RunningSidecar, direct: httpx.Client, proxied: httpx.Client
) -> None:
    """An app written for Elasticsearch's text_similarity_reranker works unchanged: the sidecar
    reranks the child retriever's top rank_window_size by the model on `field` against
    `inference_text`, and the cluster only ever sees a plain query (OpenSearch has no retrievers)."""
    child = {"match": {"text": "LoRA rank adapter"}}
    body = {
        "retriever": {
            "text_similarity_reranker": {
                "retriever": {"standard": {"query": child, "filter": {"exists": {"field": "title"}}}},
                "field": "text",
                "inference_text": "which rank should my adapter use",
                "rank_window_size": 6,
            }
        },
        "size": 3,
    }
    r = proxied.post("/kb/_search", json=body)
    assert r.status_code == 200 and r.headers["x-rerank"] == "applied", r.text
    window = direct.post("/kb/_search", json={"query": child, "size": 6}).json()["hits"]["hits"]
    scores = sidecar.backend("minilm").score(
        "which rank should my adapter use", [h["_source"]["text"] for h in window]
    )
    expected = [window[i]["_id"] for i in sorted(range(len(window)), key=lambda i: (-scores[i], i))]
    assert [h["_id"] for h in r.json()["hits"]["hits"]] == expected[:3]
    event = httpx.get(f"{sidecar.admin_url}/_sidecar/events/{r.headers['x-rerank-event']}").json()
    assert event["window"] == 6 and event["query"] == "which rank should my adapter use"
    # a page past its window: the window's end reranked, then the child's order after it
    beyond = proxied.post("/kb/_search", json={**body, "from": 4, "size": 3})
    after = direct.post("/kb/_search", json={"query": child, "from": 6, "size": 1}).json()["hits"]["hits"]
    assert beyond.headers["x-rerank"] == "applied"
    assert [h["_id"] for h in beyond.json()["hits"]["hits"]] == expected[4:6] + [h["_id"] for h in after]


def test_the_query_text_is_the_clause_on_the_routes_fields(proxied: httpx.Client) -> None:
    """A filter-like clause on another field first does not become what the model ranks by."""
    body = {
        "query": {"bool": {"must": [{"match": {"tag": "alice"}}, {"match": {"text": "gpu memory leak"}}]}}
    }
    r = proxied.post("/kb/_search", json=body, headers={"X-Rerank-Explain": "1"})
    assert r.headers["x-rerank"] == "applied" and r.json()["_rerank"]["query"] == "gpu memory leak"
