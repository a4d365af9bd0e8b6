"""Pages past the window: the reranked window first, then the cluster's order after it, with no
hit twice and none lost; after a cut the list ends with the kept hits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from osmem_server import OsmemServer

from tests.conftest import BrokenBackend, RunningSidecar, index_corpus, sidecar_config

INDEX = "docs-pages"  # routed by docs-*, window 12
TOPICS = ["gpu memory", "lora rank", "pod restart", "shipping rates", "java types", "refund policy"]
DOCS = [
    {
        "title": f"note {i} on {TOPICS[i % 6]}",
        "text": f"memory note {i}: {TOPICS[i % 6]} " + "detail " * (i % 7),
    }
    for i in range(60)
]
QUERY = {"query": {"match": {"text": "memory note gpu"}}}


@pytest.fixture(scope="module")
def pages_index(osmem: OsmemServer) -> Iterator[str]:
    index_corpus(osmem.url, INDEX, DOCS)
    yield INDEX
    httpx.delete(f"{osmem.url}/{INDEX}")


def _ids(client: httpx.Client, body: dict[str, Any], path: str = f"/{INDEX}/_search") -> list[str]:
    r = client.post(path, json=body)
    assert r.status_code == 200 and r.headers["x-rerank"] == "applied", r.text
    return [h["_id"] for h in r.json()["hits"]["hits"]]


def test_pages_of_seven_walk_the_window_then_the_clusters_order(
    pages_index: str, direct: httpx.Client, proxied: httpx.Client
) -> None:
    cluster = [
        h["_id"]
        for h in direct.post(f"/{pages_index}/_search", json={**QUERY, "size": 100}).json()["hits"]["hits"]
    ]
    assert len(cluster) == 60
    walked = [i for start in range(0, 63, 7) for i in _ids(proxied, {**QUERY, "from": start, "size": 7})]
    assert len(walked) == len(set(walked)) == 60  # none twice, none lost
    assert set(walked[:12]) == set(cluster[:12])  # the reranked window
    assert walked[12:] == cluster[12:]  # then the cluster's order
    # one page that runs past the window: the window's top part reranked, then the cluster's
    assert _ids(proxied, {**QUERY, "size": 20}) == walked[:20]
    assert _ids(proxied, {**QUERY, "from": 10, "size": 5}) == walked[10:15]
    # the same through _msearch
    lines = [{"index": pages_index}, {**QUERY, "from": 9, "size": 6}]
    r = proxied.post(
        "/_msearch",
        content="".join(json.dumps(x) + "\n" for x in lines),
        headers={"content-type": "application/x-ndjson"},
    )
    assert [h["_id"] for h in r.json()["responses"][0]["hits"]["hits"]] == walked[9:15]
    page = proxied.post(f"/{pages_index}/_search", json={**QUERY, "from": 10, "size": 5}).json()
    scores = [h["_score"] for h in page["hits"]["hits"]]
    assert (
        scores == sorted(scores, reverse=True) and scores[-1] == 0.0
    )  # past the window: below every reranked hit
    assert page["hits"]["total"] == direct.post(f"/{pages_index}/_search", json=QUERY).json()["hits"]["total"]


def test_after_a_cut_the_list_ends_with_the_kept_hits(pages_index: str, osmem: OsmemServer) -> None:
    cfg = sidecar_config(osmem.url)
    routes = [r.model_dump() for r in cfg.routes]
    routes[0]["max_hits"] = 8  # the window keeps 8 of its 12
    running = RunningSidecar(
        sidecar_config(osmem.url, routes=routes),
        backends={"slow": BrokenBackend(), "broken": BrokenBackend()},
    )
    try:
        with (
            httpx.Client(base_url=running.url, timeout=30) as proxied,
            httpx.Client(base_url=osmem.url) as direct,
        ):
            cluster = [
                h["_id"]
                for h in direct.post(f"/{pages_index}/_search", json={**QUERY, "size": 100}).json()["hits"][
                    "hits"
                ]
            ]
            walked = [
                i for start in range(0, 63, 7) for i in _ids(proxied, {**QUERY, "from": start, "size": 7})
            ]
            assert len(walked) == len(set(walked)) == 8  # the thresholds said the rest is not relevant
            assert set(walked) < set(cluster[:12])
    finally:
        running.close()
