"""Proof with simulated users: a cascade click model over SciFact's judgments drives searches
and UBI click events through a real sidecar in front of osmem-server. Interleaving must find
the better arm (the bi-encoder with rrf over the cluster's BM25 order), and an A/A experiment
(the same arm twice) must come out significant no more often than its 5% level allows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from osmem_server import OsmemServer

from sidecar.config import parse_config
from sidecar.eval.dataset import load_dataset
from testkit.users import Session, experiment_route, minilm_config
from tests.conftest import RunningSidecar

SLICE = Path(__file__).resolve().parents[1] / "data" / "scifact-slice"
INDEX = "sim-scifact"


def _config(upstream: str, experiment: dict[str, Any]) -> dict[str, Any]:
    return minilm_config(upstream, [experiment_route(INDEX, experiment)])


@pytest.fixture(scope="module")
def users(osmem: OsmemServer) -> Iterator[tuple[RunningSidecar, Session]]:
    dataset = load_dataset(SLICE)
    with httpx.Client(base_url=osmem.url, timeout=30) as c:
        c.delete(f"/{INDEX}")
        mapping = {"properties": {"title": {"type": "text"}, "text": {"type": "text"}}}
        assert c.put(f"/{INDEX}", json={"mappings": mapping}).status_code == 200
        lines = []
        for doc in dataset.corpus():
            lines.append(json.dumps({"index": {"_index": INDEX, "_id": doc["_id"]}}))
            lines.append(json.dumps({"title": doc["title"], "text": doc["text"]}))
        r = c.post(
            "/_bulk?refresh=true",
            content="\n".join(lines) + "\n",
            headers={"content-type": "application/x-ndjson"},
        )
        assert r.status_code == 200 and not r.json()["errors"]
    running = RunningSidecar(parse_config(_config(osmem.url, {"name": "better", "mode": "interleave"})))
    with httpx.Client(base_url=running.url, timeout=60) as proxy:
        yield running, Session(proxy, INDEX, dataset.queries, dataset.qrels)
    running.close()
    httpx.delete(f"{osmem.url}/{INDEX}")
    httpx.delete(f"{osmem.url}/ubi_events")


def _figures(sidecar: RunningSidecar, name: str) -> dict[str, Any]:
    return httpx.get(f"{sidecar.admin_url}/_sidecar/experiments/{name}").json()


def test_interleaving_finds_the_reranker_better_than_bm25(users: tuple[RunningSidecar, Session]) -> None:
    sidecar, session = users
    found_at = None
    for block in range(20):  # at most 400 searches, looked at every 20
        session.run(20, seed=block)
        figures = _figures(sidecar, "better")
        if figures["significant"]:
            found_at = figures["queries"]
            break
    assert found_at is not None, figures
    assert figures["better"] == "treatment" and figures["win_rate"] > 0.5
    assert figures["interval"][0] > 0.5 and figures["p_value"] < 0.05
    assert figures["queries_needed"] == 0
    shown = {k: figures[k] for k in ("wins", "losses", "ties", "win_rate", "interval", "p_value")}
    print(f"\ninterleaving found treatment better after {found_at} searches: {shown}")


def test_an_aa_experiment_is_significant_no_more_often_than_its_level(
    users: tuple[RunningSidecar, Session], osmem: OsmemServer
) -> None:
    sidecar, session = users
    significant = []
    for seed in range(20):  # each seed a new experiment, put in by a hot reload
        experiment = {"name": f"aa-{seed}", "mode": "interleave", "control": "route", "treatment": "route"}
        r = httpx.put(f"{sidecar.admin_url}/_sidecar/config", json=_config(osmem.url, experiment))
        assert r.status_code == 200, r.text
        session.run(60, seed=1000 + seed)
        figures = _figures(sidecar, f"aa-{seed}")
        assert figures["queries"] == 60 and figures["clicked_queries"] > 20
        significant.append(figures["significant"])
    # 20 runs at the 5% level: 1 expected; 4 or more would happen with probability 1.6%
    assert sum(significant) <= 3, significant
    print(f"\nA/A: {sum(significant)} of 20 significant at 5%")
