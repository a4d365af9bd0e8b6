"""An experiment's figures survive a restart when events are stored in SQLite; searches made
under other settings of the same name are not counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from osmem_server import OsmemServer

from sidecar.config import parse_config
from testkit.users import click_event, minilm_config
from tests.conftest import CORPUS, RunningSidecar, index_corpus

INDEX = "exp-restart"


def _config(upstream: str, sqlite: Path, **experiment: Any) -> dict[str, Any]:
    route = {
        "indices": [INDEX],
        "model": "minilm",
        "window": 12,
        "fields": ["title", "text"],
        "experiment": {"name": "kept", "mode": "interleave", **experiment},
    }
    return minilm_config(upstream, [route], events={"sqlite": str(sqlite)})


def _figures(sidecar: RunningSidecar) -> dict[str, Any]:
    return httpx.get(f"{sidecar.admin_url}/_sidecar/experiments/kept").json()


def test_figures_are_taken_back_after_a_restart(osmem: OsmemServer, tmp_path: Path) -> None:
    index_corpus(osmem.url, INDEX, CORPUS)
    sqlite = tmp_path / "events.sqlite"
    first = RunningSidecar(parse_config(_config(osmem.url, sqlite)))
    try:
        with httpx.Client(base_url=first.url, timeout=30) as proxy:
            for n, text in enumerate(["gpu memory", "lora rank", "restart pod", "java types"]):
                body = {"query": {"match": {"text": text}}, "size": 5, "ext": {"ubi": {"client_id": f"u{n}"}}}
                answer = proxy.post(f"/{INDEX}/_search", json=body).json()
                ids = [h["_id"] for h in answer["hits"]["hits"]]
                click = click_event(answer["ext"]["ubi"]["query_id"], f"u{n}", ids[n % 2], n % 2)
                assert proxy.post("/ubi_events/_doc", json=click).status_code == 201
        before = _figures(first)
        assert before["queries"] == 4 and before["clicks"] == 4
    finally:
        first.close()
    again = RunningSidecar(parse_config(_config(osmem.url, sqlite)))
    try:
        after = _figures(again)
        keys = ("queries", "clicks", "wins", "losses", "ties", "win_rate", "p_value")
        assert {k: after[k] for k in keys} == {k: before[k] for k in keys}
        assert [i["query_id"] for i in after["recent"]] == [i["query_id"] for i in before["recent"]]
    finally:
        again.close()
    changed = RunningSidecar(parse_config(_config(osmem.url, sqlite, min_queries=7)))
    try:
        assert _figures(changed)["queries"] == 0  # other settings: another experiment
    finally:
        changed.close()
    httpx.delete(f"{osmem.url}/{INDEX}")
