"""The fleet's score cache on a real redis-server: a score one sidecar computed is read by
another in one round trip; a cache that goes away only costs the model time."""

from __future__ import annotations

import time
from typing import Any

import httpx
from osmem_server import OsmemServer

from sidecar.config import model_entry, parse_config
from sidecar.engine.score_cache import model_fingerprint
from testkit.fleet import CacheServer
from testkit.users import minilm_config
from tests.conftest import CORPUS, RunningSidecar, index_corpus

INDEX = "fleet-cache"


def _config(upstream: str, cache_url: str) -> dict[str, Any]:
    route = {"indices": [INDEX], "model": "minilm", "window": 12, "fields": ["title", "text"]}
    return minilm_config(upstream, [route], cache={"url": cache_url, "retry_s": 0.5})


def _health(sidecar: RunningSidecar) -> dict[str, Any]:
    return httpx.get(f"{sidecar.admin_url}/_sidecar/health").json()


def _search(sidecar: RunningSidecar, text: str) -> httpx.Response:
    r = httpx.post(f"{sidecar.url}/{INDEX}/_search", json={"query": {"match": {"text": text}}, "size": 5})
    assert r.status_code == 200 and r.headers["x-rerank"] == "applied", r.text
    return r


def test_a_score_computed_by_one_sidecar_is_read_by_another(
    osmem: OsmemServer, cache_server: CacheServer
) -> None:
    index_corpus(osmem.url, INDEX, CORPUS)
    a = RunningSidecar(parse_config(_config(osmem.url, cache_server.url)))
    b = RunningSidecar(parse_config(_config(osmem.url, cache_server.url)))
    try:
        first = _search(a, "gpu memory")
        time.sleep(0.3)  # A writes its new scores off the search path
        assert _health(b)["models"]["minilm"]["batches"] == 0
        second = _search(b, "gpu memory")
        assert [h["_id"] for h in second.json()["hits"]["hits"]] == [
            h["_id"] for h in first.json()["hits"]["hits"]
        ]
        assert [h["_score"] for h in second.json()["hits"]["hits"]] == [
            h["_score"] for h in first.json()["hits"]["hits"]
        ]
        health = _health(b)
        assert (
            health["models"]["minilm"]["batches"] == 0
        )  # B's model never ran: every pair came from the cache
        assert health["shared_cache"]["hits"] > 0 and health["shared_cache"]["misses"] == 0
        assert health["shared_cache"]["state"] == "ok" and health["status"] == "ok"
        stats = httpx.get(f"{b.admin_url}/_sidecar/stats").json()
        assert stats["models"]["minilm"]["cache_hit_rate"] == 1.0
    finally:
        a.close()
        b.close()


def test_a_cache_that_goes_away_fails_open(osmem: OsmemServer, cache_server: CacheServer) -> None:
    index_corpus(osmem.url, INDEX, CORPUS)
    sidecar = RunningSidecar(parse_config(_config(osmem.url, cache_server.url)))
    try:
        _search(sidecar, "gpu memory")
        cache_server.stop()
        started = time.perf_counter()
        _search(sidecar, "java primitive types")  # new pairs: the cache is asked, fails, the model scores
        assert time.perf_counter() - started < 5
        health = _health(sidecar)
        assert health["status"] == "degraded" and health["shared_cache"]["state"] == "error"
        assert health["shared_cache"]["errors"] >= 1
        _search(sidecar, "shipping to norway")  # skipped while it is down: still answered
    finally:
        sidecar.close()


def test_the_keys_change_with_what_decides_the_scores_only() -> None:
    base = {"backend": "bi-encoder", "model": "all-MiniLM-L6-v2"}
    same = model_fingerprint(model_entry(base))
    assert (
        model_fingerprint(model_entry({**base, "device": "cuda", "cache_size": 10, "batch_size": 8})) == same
    )
    assert model_fingerprint(model_entry({**base, "max_length": 128})) != same
    assert model_fingerprint(model_entry({**base, "model": "other/model"})) != same
