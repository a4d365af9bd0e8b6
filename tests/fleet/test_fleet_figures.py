"""Figures over the events index every sidecar writes: the same whichever replica answers; a
click that reaches another replica than its search still counts for the fleet."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from osmem_server import OsmemServer

from sidecar.config import parse_config
from testkit.users import click_event, minilm_config
from tests.conftest import CORPUS, RunningSidecar, index_corpus
from tests.fleet.conftest import poll_until

INDEX = "fleet-figures"
EVENTS = "fleet-test-events"


def _config(upstream: str) -> dict[str, Any]:
    route = {
        "indices": [INDEX],
        "model": "minilm",
        "window": 12,
        "fields": ["title", "text"],
        "experiment": {"name": "fleet-il", "mode": "interleave"},
    }
    return minilm_config(upstream, [route], events={"index": EVENTS})


@pytest.fixture
def two(osmem: OsmemServer) -> Iterator[tuple[RunningSidecar, RunningSidecar]]:
    index_corpus(osmem.url, INDEX, CORPUS)
    for name in (EVENTS, "ubi_events"):
        httpx.delete(f"{osmem.url}/{name}")
    a = RunningSidecar(parse_config(_config(osmem.url)))
    b = RunningSidecar(parse_config(_config(osmem.url)))
    yield a, b
    a.close()
    b.close()
    for name in (EVENTS, "ubi_events"):
        httpx.delete(f"{osmem.url}/{name}")


def _search(sidecar: RunningSidecar, text: str, user: str) -> tuple[str, list[str]]:
    body = {"query": {"match": {"text": text}}, "size": 5, "ext": {"ubi": {"client_id": user}}}
    answer = httpx.post(f"{sidecar.url}/{INDEX}/_search", json=body).json()
    return answer["ext"]["ubi"]["query_id"], [h["_id"] for h in answer["hits"]["hits"]]


def test_stats_previews_and_experiments_over_the_whole_fleet(
    two: tuple[RunningSidecar, RunningSidecar], osmem: OsmemServer
) -> None:
    a, b = two
    searches = [(a, "gpu memory", "u1"), (b, "lora rank", "u2"), (b, "java types", "u3")]
    served = [_search(s, text, user) for s, text, user in searches]
    # every click reaches B (a load balancer's choice), A's search among them
    for (query_id, ids), (_, _, user) in zip(served, searches, strict=True):
        r = httpx.post(f"{b.url}/ubi_events/_doc?refresh=true", json=click_event(query_id, user, ids[0], 0))
        assert r.status_code == 201

    def fleet(sidecar: RunningSidecar, path: str) -> dict[str, Any]:
        r = httpx.get(f"{sidecar.admin_url}{path}", params={"scope": "fleet"})
        assert r.status_code == 200, r.text
        return r.json()

    def indexed() -> bool:  # the sidecars' event writers bulk off the search path
        httpx.post(f"{osmem.url}/{EVENTS}/_refresh")
        return bool(fleet(a, "/_sidecar/stats")["searches"] == 3)

    poll_until(indexed, timeout=15.0, step=0.1)
    assert fleet(b, "/_sidecar/stats")["searches"] == 3  # whichever replica answers
    assert httpx.get(f"{a.admin_url}/_sidecar/stats").json()["searches"] == 1  # A's own
    # A's own experiment never saw the click on its search (it went to B); the fleet's did
    local = httpx.get(f"{a.admin_url}/_sidecar/experiments/fleet-il").json()
    assert local["queries"] == 1 and local["clicks"] == 0
    for sidecar in (a, b):
        figures = fleet(sidecar, "/_sidecar/experiments/fleet-il")
        assert figures["queries"] == 3 and figures["clicks"] == 3
        assert figures["wins"] + figures["losses"] + figures["ties"] == 3
    preview = httpx.post(
        f"{b.admin_url}/_sidecar/preview",
        json={"route": 0, "thresholds": {"max_hits": 1}, "scope": "fleet"},
    ).json()
    assert preview["current"]["searches"] == 3
    bad = httpx.get(f"{a.admin_url}/_sidecar/stats", params={"scope": "galaxy"})
    assert bad.status_code == 400 and "local or fleet" in bad.json()["error"]["reason"]


def test_scope_fleet_needs_the_events_index(osmem: OsmemServer) -> None:
    route = {"indices": [INDEX], "model": "minilm", "window": 12, "fields": ["title", "text"]}
    sidecar = RunningSidecar(parse_config(minilm_config(osmem.url, [route])))
    try:
        r = httpx.get(f"{sidecar.admin_url}/_sidecar/stats", params={"scope": "fleet"})
        assert r.status_code == 400 and "set events.index" in r.json()["error"]["reason"]
    finally:
        sidecar.close()


async def test_the_tui_shows_the_fleets_own_figures(two: tuple[RunningSidecar, RunningSidecar]) -> None:
    from textual.widgets import Static

    from tests.tui.conftest import until
    from tui.app import SidecarTUI

    a, b = two
    _search(a, "gpu memory", "u1")
    app = SidecarTUI([a.admin_url, b.admin_url], stats_interval_s=0.2)
    async with app.run_test(size=(160, 30)) as pilot:

        def figures() -> str:
            return str(app.screen.query_one("#live-figures", Static).render())

        def fleet_line() -> str:
            return next((line for line in figures().splitlines() if line.startswith("fleet  ")), "")

        # the replicas' own figures may come first (their sum stands in, with "replicas N");
        # then the fleet's figures from the events index take its place
        await until(pilot, lambda: fleet_line().startswith("fleet  QPS") and "replicas" not in fleet_line())
        assert "p50" in fleet_line()
