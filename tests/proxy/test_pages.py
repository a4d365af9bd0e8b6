"""Pages past the window: the reranked window first, then the cluster's order after it, with no
hit twice and none lost; after a cut the list ends with the kept hits."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
from osmem_server import OsmemServer

from tests.conftest import BrokenBackend, RunningSidecar, SlowBackend, index_corpus, sidecar_config

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


class Flaky(BrokenBackend):
    """Fails while ``failing`` (a model that was not ready: the first page falls back), then
    scores the window upside down (so that its order is never the cluster's)."""

    failing = True

    def score(self, query: str, documents: Sequence[str], instruction: str | None = None) -> list[float]:
        if self.failing:
            raise RuntimeError("not ready yet")
        return [i / 100 for i in range(len(documents))]


def test_the_pages_of_a_search_that_fell_back_never_mix_two_orders(
    pages_index: str, osmem: OsmemServer
) -> None:
    flaky = Flaky()
    route = {
        "indices": [pages_index],
        "model": "broken",
        "window": 12,
        "fields": ["title", "text"],
        "fusion": "replace",
    }
    running = RunningSidecar(
        sidecar_config(osmem.url, routes=[route]), backends={"slow": SlowBackend(), "broken": flaky}
    )
    try:
        with (
            httpx.Client(base_url=running.url, timeout=30) as side,
            httpx.Client(base_url=osmem.url) as direct,
        ):

            def page(body: dict[str, Any], start: int) -> tuple[str, list[str]]:
                r = side.post(f"/{pages_index}/_search", json={**body, "from": start, "size": 4})
                assert r.status_code == 200, r.text
                reason = r.headers.get("x-rerank-reason", "")
                return f"{r.headers['x-rerank']} {reason}".strip(), [
                    h["_id"] for h in r.json()["hits"]["hits"]
                ]

            cluster = [
                h["_id"]
                for h in direct.post(f"/{pages_index}/_search", json={**QUERY, "size": 12}).json()["hits"][
                    "hits"
                ]
            ]
            assert page(QUERY, 0) == ("fallback model-error", cluster[:4])
            flaky.failing = False  # the model is ready now: page 2 alone would be reranked
            assert page(QUERY, 4) == ("fallback paged-fallback", cluster[4:8])
            assert page(QUERY, 8) == ("fallback paged-fallback", cluster[8:12])
            # another search is not held back
            other = {"query": {"match": {"text": "memory note lora"}}}
            assert page(other, 4)[0] == "applied"
            # the first page asked again is reranked, and its later pages with it: one order
            status, first = page(QUERY, 0)
            assert status == "applied" and first == cluster[::-1][:4]
            assert page(QUERY, 4) == ("applied", cluster[::-1][4:8])
    finally:
        running.close()
