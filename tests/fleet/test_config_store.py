"""The fleet's one config in an index of the cluster: a change through any sidecar reaches all,
a change based on a stale version is refused with what changed, a store out of reach keeps the
last good config."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from osmem_server import OsmemServer

from sidecar.config import parse_config
from testkit.users import minilm_config
from tests.conftest import CORPUS, RunningSidecar, index_corpus
from tests.fleet.conftest import poll_until

INDEX = "fleet-kb"
STORE = ".fleet-test-config"


def _config(
    upstream: str, min_score: float | None = None, store_url: str | None = None, interval: float = 0.2
) -> dict[str, Any]:
    route = {
        "name": "kb",
        "indices": [INDEX],
        "model": "minilm",
        "window": 12,
        "fields": ["title", "text"],
        "min_score": min_score,
    }
    store = {"index": STORE, "interval_s": interval, "url": store_url}
    return minilm_config(upstream, [route], config_store=store)


def _min_score(sidecar: RunningSidecar) -> Any:
    return httpx.get(f"{sidecar.admin_url}/_sidecar/config").json()["routes"][0]["min_score"]


@pytest.fixture
def fleet(osmem: OsmemServer) -> Iterator[tuple[RunningSidecar, RunningSidecar]]:
    index_corpus(osmem.url, INDEX, CORPUS)
    httpx.delete(f"{osmem.url}/{STORE}")
    a = RunningSidecar(parse_config(_config(osmem.url, min_score=0.1)))
    b = RunningSidecar(parse_config({**_config(osmem.url, min_score=0.9), "events": {"buffer": 77}}))
    yield a, b
    a.close()
    b.close()
    httpx.delete(f"{osmem.url}/{STORE}")


def test_a_change_through_one_sidecar_is_applied_by_all(
    fleet: tuple[RunningSidecar, RunningSidecar], osmem: OsmemServer
) -> None:
    a, b = fleet
    # the first sidecar stored its config; the second took the fleet's over its own file's
    assert _min_score(a) == 0.1 and _min_score(b) == 0.1
    stored = httpx.get(f"{osmem.url}/{STORE}/_doc/config").json()
    assert stored["_version"] == 1
    before = httpx.get(f"{b.admin_url}/_sidecar/health").json()["config_store"]
    assert before["version"] == 1 and before["state"] == "ok"
    new = httpx.get(f"{a.admin_url}/_sidecar/config").json()
    new["routes"][0]["min_score"] = None
    new["routes"][0]["max_hits"] = 2
    r = httpx.put(f"{a.admin_url}/_sidecar/config", json=new)
    assert r.status_code == 200, r.text
    poll_until(lambda: _min_score(b) is None)
    assert httpx.get(f"{b.admin_url}/_sidecar/stats").json()["config_version"] == 2
    # B searches with the new threshold now
    body = {"query": {"match": {"text": "memory"}}, "size": 10}
    assert len(httpx.post(f"{b.url}/{INDEX}/_search", json=body).json()["hits"]["hits"]) == 2
    # what is each sidecar's own (listeners, upstream, events, ...) stays its own
    assert httpx.get(f"{b.admin_url}/_sidecar/config").json()["events"]["buffer"] == 77
    assert httpx.get(f"{a.admin_url}/_sidecar/config").json()["events"]["buffer"] == 2000


def test_a_change_on_a_stale_version_is_refused_with_what_changed(
    osmem: OsmemServer,
) -> None:
    index_corpus(osmem.url, INDEX, CORPUS)
    httpx.delete(f"{osmem.url}/{STORE}")
    a = RunningSidecar(parse_config(_config(osmem.url, min_score=0.1, interval=3600)))
    b = RunningSidecar(parse_config(_config(osmem.url, interval=3600)))  # reads the store once, at start
    try:
        first = httpx.get(f"{a.admin_url}/_sidecar/config").json()
        first["routes"][0]["min_score"] = 0.2
        assert httpx.put(f"{a.admin_url}/_sidecar/config", json=first).status_code == 200
        stale = httpx.get(f"{b.admin_url}/_sidecar/config").json()
        assert stale["routes"][0]["min_score"] == 0.1  # B has not read version 2
        stale["routes"][0]["max_hits"] = 3
        r = httpx.put(f"{b.admin_url}/_sidecar/config", json=stale)
        assert r.status_code == 409, r.text
        error = r.json()["error"]
        assert error["type"] == "version_conflict_engine_exception"
        assert "version 2" in error["reason"] and "routes.0.min_score" in error["reason"]
        assert (
            httpx.get(f"{b.admin_url}/_sidecar/config").json()["routes"][0]["max_hits"] is None
        )  # unchanged
        assert httpx.get(f"{osmem.url}/{STORE}/_doc/config").json()["_version"] == 2
    finally:
        a.close()
        b.close()
        httpx.delete(f"{osmem.url}/{STORE}")


def test_a_store_out_of_reach_keeps_the_last_good_config_and_says_so(osmem: OsmemServer) -> None:
    index_corpus(osmem.url, INDEX, CORPUS)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    sidecar = RunningSidecar(
        parse_config(_config(osmem.url, min_score=0.4, store_url=f"http://127.0.0.1:{port}"))
    )
    try:
        health = httpx.get(f"{sidecar.admin_url}/_sidecar/health").json()
        assert health["status"] == "degraded"
        assert (
            health["config_store"]["state"] == "error" and "ConnectError" in health["config_store"]["error"]
        )
        r = httpx.post(f"{sidecar.url}/{INDEX}/_search", json={"query": {"match": {"text": "memory"}}})
        assert r.status_code == 200 and r.headers["x-rerank"] == "applied"  # searches go on
        new = httpx.get(f"{sidecar.admin_url}/_sidecar/config").json()
        new["routes"][0]["min_score"] = 0.5
        r = httpx.put(f"{sidecar.admin_url}/_sidecar/config", json=new)
        assert r.status_code == 503 and r.json()["error"]["reason"].startswith("nothing changed")
        assert _min_score(sidecar) == 0.4
    finally:
        sidecar.close()


async def test_the_tui_shows_each_replicas_config_version_and_the_fleet(
    fleet: tuple[RunningSidecar, RunningSidecar],
) -> None:
    from textual.widgets import Static

    from tests.tui.conftest import until
    from tui.app import SidecarTUI

    a, b = fleet
    app = SidecarTUI([a.admin_url, b.admin_url], stats_interval_s=0.2)
    async with app.run_test(size=(160, 30)) as pilot:

        def figures() -> str:
            return str(app.screen.query_one("#live-figures", Static).render())

        await until(pilot, lambda: figures().count("cfg v1") == 2 and "fleet" in figures())
        # no shared events index here: the fleet line adds the replicas up
        assert "replicas 2" in figures() and "cfg same" in figures()
