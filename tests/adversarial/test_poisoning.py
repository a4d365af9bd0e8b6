"""Defects 6 and 9: forged clicks cannot move an experiment's figures (another user's search, a
made-up or colliding query id, a bulk item the cluster refused, a hit not served, a repeat, a
late click, past an identity's caps), the responses do not tell a client which arm placed a hit,
and ``events.redact`` keeps query text out of the experiments API too."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from osmem_server import OsmemServer

from sidecar.config import parse_config
from testkit.users import click_event, experiment_route, minilm_config
from tests.adversarial.conftest import poll
from tests.conftest import CORPUS, RunningSidecar, index_corpus

INDEX = "adv-exp"
EXPERIMENT = {
    "name": "poison",
    "mode": "interleave",
    "max_searches_per_identity": 3,
    "max_clicks_per_identity": 2,
}


@pytest.fixture(scope="module")
def lab(osmem: OsmemServer) -> Iterator[RunningSidecar]:
    index_corpus(osmem.url, INDEX, CORPUS)
    cfg = minilm_config(
        osmem.url,
        [experiment_route(INDEX, EXPERIMENT)],
        ubi={"click_window_s": 3.0},
        events={"redact": True},
    )
    running = RunningSidecar(parse_config(cfg))
    yield running
    running.close()
    for index in (INDEX, "ubi_events"):
        httpx.delete(f"{osmem.url}/{index}")


def _search(lab: RunningSidecar, client: str, query_id: str | None = None) -> dict[str, Any]:
    ubi: dict[str, Any] = {"client_id": client}
    if query_id:
        ubi["query_id"] = query_id
    body = {"query": {"match": {"text": "gpu memory lora"}}, "size": 5, "ext": {"ubi": ubi}}
    r = httpx.post(f"{lab.url}/{INDEX}/_search", json=body, timeout=30)
    assert r.status_code == 200
    assert r.headers["x-rerank-experiment"] == "poison"  # no arm in the answer
    assert "x-rerank-model" not in r.headers
    hits = r.json()["hits"]["hits"]
    assert all("_rerank" not in h for h in hits)  # no original_rank: no arm to read off a hit
    return {"query_id": r.json()["ext"]["ubi"]["query_id"], "ids": [h["_id"] for h in hits]}


def _figures(lab: RunningSidecar) -> dict[str, Any]:
    return httpx.get(f"{lab.admin_url}/_sidecar/experiments/poison").json()


def _rejected(lab: RunningSidecar) -> dict[str, int]:
    got: dict[str, int] = httpx.get(f"{lab.admin_url}/_sidecar/experiments").json()["rejected_clicks"]
    return got


def _click(lab: RunningSidecar, query_id: str, client: str, object_id: str) -> None:
    r = httpx.post(f"{lab.url}/ubi_events/_doc", json=click_event(query_id, client, object_id, 0))
    assert r.status_code == 201


def test_forged_clicks_leave_the_figures_unmoved(lab: RunningSidecar, osmem: OsmemServer) -> None:
    victims = [_search(lab, f"victim-{i}") for i in range(4)]
    before = _figures(lab)
    rejected_before = sum(_rejected(lab).values())
    # another identity's clicks on the victims' searches
    for v in victims:
        for object_id in v["ids"][:3]:
            _click(lab, v["query_id"], "attacker", object_id)
    # an id the sidecar never issued, of the issued shape and not
    _click(lab, "0" * 32, "attacker", victims[0]["ids"][0])
    _click(lab, "made-up", "attacker", victims[0]["ids"][0])
    # a colliding query id: the attacker's own search under a victim's id does not replace it
    mine = _search(lab, "attacker", query_id=victims[1]["query_id"])
    _click(
        lab,
        victims[1]["query_id"],
        "victim-1",
        mine["ids"][4] if mine["ids"][4] not in victims[1]["ids"] else "nope",
    )
    # bulk items the cluster refused (a document that is not an object) carry clicks too
    lines = [
        {"index": {"_index": "ubi_events"}},
        "not an object",
        {"index": {"_index": "ubi_events", "_id": "x", "version": 1, "version_type": "external"}},
        click_event(victims[2]["query_id"], "victim-2", victims[2]["ids"][0], 0),
        {"index": {"_index": "ubi_events", "_id": "x", "version": 1, "version_type": "external"}},
        click_event(victims[2]["query_id"], "victim-2", victims[2]["ids"][1], 1),
    ]
    bulk = "\n".join(json.dumps(x) for x in lines) + "\n"
    r = httpx.post(f"{lab.url}/_bulk", content=bulk, headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 200
    statuses = [next(iter(i.values()))["status"] for i in r.json()["items"]]
    assert statuses[0] >= 400 and statuses[2] == 409  # refused: not stored, not counted
    after = _figures(lab)
    # the one stored click (victim-2's own, the bulk's second item) is the only one that counts
    assert after["clicks"] == before["clicks"] + 1, after
    assert sum(_rejected(lab).values()) > rejected_before
    # a victim's own clicks: a hit not served, a repeat, then late
    _click(lab, victims[3]["query_id"], "victim-3", "not-served")
    _click(lab, victims[3]["query_id"], "victim-3", victims[3]["ids"][0])
    _click(lab, victims[3]["query_id"], "victim-3", victims[3]["ids"][0])
    poll(lambda: _figures(lab)["clicks"] == before["clicks"] + 2)
    time.sleep(3.2)  # past click_window_s
    _click(lab, victims[3]["query_id"], "victim-3", victims[3]["ids"][1])
    assert _figures(lab)["clicks"] == before["clicks"] + 2
    rejected = _rejected(lab)
    assert rejected["identity"] >= 12 and rejected["not_served"] >= 1
    assert rejected["duplicate"] >= 1 and rejected["late"] >= 1


def test_one_identity_weighs_no_more_than_its_caps(lab: RunningSidecar) -> None:
    before = _figures(lab)
    served = [_search(lab, "heavy") for _ in range(6)]  # 3 counted, the rest served only
    assert _figures(lab)["queries"] == before["queries"] + 3
    for s in served[:3]:
        for object_id in s["ids"][:2]:
            _click(lab, s["query_id"], "heavy", object_id)
    poll(lambda: _figures(lab)["clicks"] >= before["clicks"] + 2)
    time.sleep(0.3)
    assert _figures(lab)["clicks"] == before["clicks"] + 2  # max_clicks_per_identity


def test_redacted_events_keep_query_text_out_of_the_experiments_api(lab: RunningSidecar) -> None:
    _search(lab, "reader")
    detail = _figures(lab)
    assert detail["recent"] and all(i["query"] is None for i in detail["recent"])
