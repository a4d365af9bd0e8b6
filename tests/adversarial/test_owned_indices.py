"""Defects 1 and 12: the indices the sidecar owns (the fleet's config store, the events index)
cannot be read or written through the proxy port in any spelling, a stored config not signed
with the fleet's key is refused, and a deleted store is noticed and written again."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from osmem_server import OsmemServer

from sidecar.config import parse_config
from testkit.users import minilm_config
from tests.adversarial.conftest import poll
from tests.conftest import CORPUS, RunningSidecar, index_corpus

STORE = ".adv-config"
EVENTS = "adv-events"
INDEX = "adv-kb"


@pytest.fixture(scope="module")
def fleet(osmem: OsmemServer) -> Iterator[tuple[RunningSidecar, RunningSidecar]]:
    index_corpus(osmem.url, INDEX, CORPUS)
    for index in (STORE, EVENTS):
        httpx.delete(f"{osmem.url}/{index}")
    route = {"name": "kb", "indices": [INDEX], "model": "minilm", "window": 8, "fields": ["title", "text"]}
    cfg = minilm_config(
        osmem.url,
        [route],
        config_store={"index": STORE, "interval_s": 0.2},
        events={"index": EVENTS},
    )
    a, b = RunningSidecar(parse_config(cfg)), RunningSidecar(parse_config(cfg))
    yield a, b
    a.close()
    b.close()
    for index in (STORE, EVENTS, INDEX):
        httpx.delete(f"{osmem.url}/{index}")


def _doc(osmem: OsmemServer) -> Any:
    return httpx.get(f"{osmem.url}/{STORE}/_doc/config").json()


ATTACKS: list[tuple[str, str, Any, dict[str, str]]] = [
    ("GET", f"/{STORE}/_doc/config", None, {}),
    ("PUT", f"/{STORE}/_doc/config", {"config": "{}"}, {}),
    ("GET", "/%2Eadv-config/_doc/config", None, {}),  # percent-encoded
    ("GET", "/%252Eadv-config/_search", None, {}),  # twice
    ("GET", "/.ADV-CONFIG/_search", None, {}),
    ("GET", "/.adv-c*/_search", None, {}),  # a pattern that matches it
    ("POST", "/kb,.adv-config/_search", {}, {}),
    ("GET", "/_all/_search?expand_wildcards=all", None, {}),
    ("GET", "/*/_search?expand_wildcards=hidden,open", None, {}),
    ("GET", "/_search?expand_wildcards=all", None, {}),
    ("POST", f"/{EVENTS}/_delete_by_query", {"query": {"match_all": {}}}, {}),
    ("POST", "/adv-ev*/_update_by_query", {}, {}),
    ("DELETE", f"/{STORE}", None, {}),
    ("PUT", f"/{STORE}/_alias/innocent", None, {}),
    ("POST", "/_aliases", {"actions": [{"add": {"index": STORE, "alias": "innocent"}}]}, {}),
    ("POST", "/_reindex", {"source": {"index": INDEX}, "dest": {"index": STORE}}, {}),
    ("POST", "/_reindex", {"source": {"index": ".adv-*"}, "dest": {"index": "copy"}}, {}),
    ("POST", "/_mget", {"docs": [{"_index": STORE, "_id": "config"}]}, {}),
    ("POST", "/_plugins/_sql", {"query": f"SELECT * FROM {STORE}"}, {}),
    (
        "POST",
        f"/{INDEX}/_search",
        {"query": {"terms": {"title": {"index": STORE, "id": "config", "path": "config"}}}},
        {},
    ),
]


@pytest.mark.parametrize("method,path,body,headers", ATTACKS)
def test_an_owned_index_is_refused_in_every_spelling(
    fleet: tuple[RunningSidecar, RunningSidecar],
    osmem: OsmemServer,
    method: str,
    path: str,
    body: Any,
    headers: dict[str, str],
) -> None:
    a, _ = fleet
    before = _doc(osmem)
    r = httpx.request(method, a.url + path, json=body, headers=headers, timeout=10)
    assert r.status_code == 403, r.text
    err = r.json()
    assert err["status"] == 403 and err["error"]["type"] == "security_exception"
    assert _doc(osmem) == before  # nothing applied


def test_bulk_and_msearch_lines_that_name_it_are_refused_even_gzipped(
    fleet: tuple[RunningSidecar, RunningSidecar], osmem: OsmemServer
) -> None:
    a, _ = fleet
    before = _doc(osmem)
    lines = [
        {"index": {"_index": INDEX, "_id": "x1"}},
        {"title": "harmless"},
        {"index": {"_index": STORE, "_id": "config"}},
        {"config": "{}", "by": "attacker"},
    ]
    bulk = ("\n".join(json.dumps(x) for x in lines) + "\n").encode()
    ndjson = {"content-type": "application/x-ndjson"}
    for body, extra in ((bulk, {}), (gzip.compress(bulk), {"content-encoding": "gzip"})):
        r = httpx.post(f"{a.url}/_bulk", content=body, headers=ndjson | extra, timeout=10)
        assert r.status_code == 403, r.text
    msearch = f'{{"index": "{INDEX}"}}\n{{}}\n{{"index": "{STORE}"}}\n{{}}\n'.encode()
    r = httpx.post(f"{a.url}/_msearch", content=msearch, headers=ndjson, timeout=10)
    assert r.status_code == 403
    assert _doc(osmem) == before
    assert httpx.get(f"{osmem.url}/{INDEX}/_doc/x1").status_code == 404  # the whole bulk refused


def test_apps_own_requests_still_pass(fleet: tuple[RunningSidecar, RunningSidecar]) -> None:
    a, _ = fleet
    r = httpx.post(f"{a.url}/{INDEX}/_search", json={"query": {"match": {"text": "memory"}}})
    assert r.status_code == 200 and r.headers["x-rerank"] == "applied"
    assert httpx.get(f"{a.url}/_search").status_code == 200  # a plain search of everything
    assert httpx.get(f"{a.url}/*/_search").status_code == 200
    assert httpx.get(f"{a.url}/_cat/indices").status_code == 200
    doc = {"title": "index names in text: .adv-config"}  # an app's document may mention it
    assert httpx.put(f"{a.url}/{INDEX}/_doc/mention", json=doc).status_code in (200, 201)


def test_the_owned_indices_are_hidden_so_star_and_all_do_not_reach_them(
    fleet: tuple[RunningSidecar, RunningSidecar], osmem: OsmemServer
) -> None:
    a, _ = fleet
    httpx.post(f"{a.url}/{INDEX}/_search", json={"query": {"match": {"text": "memory"}}})
    poll(lambda: httpx.head(f"{osmem.url}/{EVENTS}").status_code == 200)
    for index in (STORE, EVENTS):
        settings = httpx.get(f"{osmem.url}/{index}/_settings").json()[index]["settings"]["index"]
        assert str(settings.get("hidden")).lower() == "true", index
    httpx.post(f"{osmem.url}/_refresh")
    hits = httpx.get(f"{a.url}/*/_search", params={"size": 100}).json()["hits"]["hits"]
    assert not {h["_index"] for h in hits} & {STORE, EVENTS}


def test_a_config_not_signed_with_the_fleets_key_is_refused(
    fleet: tuple[RunningSidecar, RunningSidecar], osmem: OsmemServer
) -> None:
    a, b = fleet
    good = _doc(osmem)
    forged = dict(good["_source"])
    shared = json.loads(forged["config"])
    shared["models"]["evil"] = {"backend": "remote", "api": "tei", "url": "http://127.0.0.1:9"}
    shared["routes"][0]["model"] = "evil"
    forged["config"] = json.dumps(shared)  # its signature no longer fits
    r = httpx.put(f"{osmem.url}/{STORE}/_doc/config", json=forged)  # written straight to the cluster
    assert r.status_code == 200
    for sidecar in (a, b):
        poll(lambda s=sidecar: httpx.get(f"{s.admin_url}/_sidecar/health").json()["status"] == "degraded")
        health = httpx.get(f"{sidecar.admin_url}/_sidecar/health").json()
        assert "not signed" in health["config_store"]["error"]
        assert httpx.get(f"{sidecar.admin_url}/_sidecar/config").json()["routes"][0]["model"] == "minilm"
        r = httpx.post(f"{sidecar.url}/{INDEX}/_search", json={"query": {"match": {"text": "memory"}}})
        assert r.headers["x-rerank-model"] == "minilm"
    httpx.put(f"{osmem.url}/{STORE}/_doc/config", json=good["_source"])  # the good one back
    for sidecar in (a, b):
        poll(
            lambda s=sidecar: (
                httpx.get(f"{s.admin_url}/_sidecar/health").json()["config_store"]["error"] is None
            )
        )


def test_a_deleted_store_is_noticed_written_again_and_changes_go_on(
    fleet: tuple[RunningSidecar, RunningSidecar], osmem: OsmemServer
) -> None:
    a, b = fleet
    assert httpx.delete(f"{osmem.url}/{STORE}").status_code == 200
    poll(lambda: httpx.get(f"{osmem.url}/{STORE}/_doc/config").status_code == 200)
    poll(
        lambda: (
            httpx.get(f"{a.admin_url}/_sidecar/health").json()["config_store"]["recreated"] is not None
            or httpx.get(f"{b.admin_url}/_sidecar/health").json()["config_store"]["recreated"] is not None
        )
    )
    for s in (a, b):  # both follow the store written again
        poll(
            lambda s=s: (
                (h := httpx.get(f"{s.admin_url}/_sidecar/health").json()["config_store"])["error"] is None
                and h["version"] is not None
            )
        )
    config = httpx.get(f"{a.admin_url}/_sidecar/config").json()
    config["routes"][0]["min_score"] = 0.25
    r = httpx.put(f"{a.admin_url}/_sidecar/config", json=config)
    assert r.status_code == 200, r.text
    poll(lambda: httpx.get(f"{b.admin_url}/_sidecar/config").json()["routes"][0]["min_score"] == 0.25)
