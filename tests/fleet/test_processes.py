"""Three sidecar processes and one osmem-server on loopback: a config change made through one
replica is applied by all; a repeated query mix sent round the replicas hits the cache far more
often with the shared tier than with each replica's own LRU alone."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from osmem_server import OsmemServer

from testkit.fleet import CacheServer, Fleet
from testkit.users import minilm_config
from tests.conftest import CORPUS, index_corpus

INDEX = "fleet-procs"
STORE = ".fleet-procs-config"
QUERIES = ["gpu memory", "lora rank", "java types", "restart a pod", "shipping to norway", "refund"]


def _config(upstream: str, cache_url: str | None) -> dict[str, Any]:
    route = {"name": "kb", "indices": [INDEX], "model": "minilm", "window": 12, "fields": ["title", "text"]}
    extra: dict[str, Any] = {"config_store": {"index": STORE, "interval_s": 0.3}, "log_level": "warning"}
    if cache_url:
        extra["cache"] = {"url": cache_url}
    return minilm_config(upstream, [route], **extra)


def _hit_rate(fleet: Fleet) -> float | None:
    for admin in fleet.admin_urls:
        shared = httpx.get(f"{admin}/_sidecar/health").json().get("shared_cache") or {}
        assert not shared or shared["state"] == "ok"
    return fleet.cache_hit_rate()


def _round_robin(fleet: Fleet, rounds: int) -> None:
    """Each round sends every query once, each to the next replica of the last round's: a
    query meets replicas 0, 1, 2, 0, ..."""
    for r_ in range(rounds):
        for q, text in enumerate(QUERIES):
            url = fleet.urls[(q + r_) % len(fleet.urls)]
            r = httpx.post(f"{url}/{INDEX}/_search", json={"query": {"match": {"text": text}}, "size": 5})
            assert r.status_code == 200 and r.headers["x-rerank"] == "applied"
        time.sleep(0.2)  # the new scores reach the shared tier off the search path


def test_three_replicas_share_one_config_and_one_cache(
    osmem: OsmemServer, cache_server: CacheServer, tmp_path: Path
) -> None:
    index_corpus(osmem.url, INDEX, CORPUS)
    rates = {}
    for label, cache in (("own LRU only", None), ("shared tier", cache_server.url)):
        httpx.delete(f"{osmem.url}/{STORE}")
        folder = tmp_path / label.replace(" ", "-")
        folder.mkdir()
        with Fleet(_config(osmem.url, cache), 3, folder) as fleet:
            _round_robin(fleet, 4)  # each query reaches each replica: 6 queries x 4 rounds over 3
            rates[label] = _hit_rate(fleet)
            if cache is None:
                continue
            # a change through the first replica: all three run it within a few intervals
            config = httpx.get(f"{fleet.admin_urls[0]}/_sidecar/config").json()
            config["routes"][0]["max_hits"] = 2
            assert httpx.put(f"{fleet.admin_urls[0]}/_sidecar/config", json=config).status_code == 200
            deadline = time.monotonic() + 10
            for admin, url in zip(fleet.admin_urls, fleet.urls, strict=True):
                while httpx.get(f"{admin}/_sidecar/config").json()["routes"][0]["max_hits"] != 2:
                    assert time.monotonic() < deadline, "a replica did not take the change"
                    time.sleep(0.1)
                r = httpx.post(f"{url}/{INDEX}/_search", json={"query": {"match": {"text": "memory"}}})
                assert len(r.json()["hits"]["hits"]) == 2
                assert httpx.get(f"{admin}/_sidecar/stats").json()["config_version"] == 2
    # four visits of each query: with its own LRU a replica knows it only on the fourth (1/4 of
    # the pairs hit); with the shared tier every visit after the first hits (3/4)
    print(f"\ncache hit rate over the fleet: {rates}")
    own, shared = rates["own LRU only"], rates["shared tier"]
    assert own is not None and shared is not None
    assert abs(own - 0.25) < 0.05 and abs(shared - 0.75) < 0.05
