"""Hits with no text in the route's fields (hidden by field-level security, or absent) are not
scored as empty strings: they keep their cluster order after the scored hits, flagged."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from osmem_server import OsmemServer

from tests.conftest import CORPUS, RunningSidecar, index_corpus

INDEX = "docs-patchy"  # routed by docs-*: fields title and text


@pytest.fixture(scope="module")
def patchy(osmem: OsmemServer) -> Iterator[str]:
    docs = [dict(d, tag="gpu") for d in CORPUS[:8]] + [{"tag": "gpu"}, {"tag": "gpu"}]  # 8, 9: no text
    index_corpus(osmem.url, INDEX, docs)
    yield INDEX
    httpx.delete(f"{osmem.url}/{INDEX}")


def test_hits_without_text_come_after_the_scored_ones_flagged(
    patchy: str, sidecar: RunningSidecar, direct: httpx.Client, proxied: httpx.Client
) -> None:
    body = {
        "query": {"bool": {"should": [{"match": {"text": "gpu memory"}}, {"term": {"tag": "gpu"}}]}},
        "size": 10,
    }
    cluster = [h["_id"] for h in direct.post(f"/{patchy}/_search", json=body).json()["hits"]["hits"]]
    r = proxied.post(f"/{patchy}/_search", json=body)
    assert r.status_code == 200 and r.headers["x-rerank"] == "applied"
    assert "missing-text" in r.headers["x-rerank-flags"].split(",")
    hits = r.json()["hits"]["hits"]
    assert {h["_id"] for h in hits} == set(cluster)
    assert [h["_id"] for h in hits][-2:] == [i for i in cluster if i in ("8", "9")]
    assert all(h["_score"] == 0.0 for h in hits[-2:]) and hits[-3]["_score"] >= 0.0
    event = httpx.get(f"{sidecar.admin_url}/_sidecar/events/{r.headers['x-rerank-event']}").json()
    assert "missing-text" in event["flags"]
    assert sorted(b["id"] for b in event["baseline"] if b.get("no_text")) == ["8", "9"]  # for previews
