"""Defects 2, 4, 13 and 14: nothing a client sends can stop event recording or take the proxy
down through the store: a lone surrogate is written (escaped) by every sink, a broken -shm file
cannot SIGBUS the process, a removed data folder is made again, and what an event keeps of a
huge query is bounded."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from osmem_server import OsmemServer

from sidecar.config import parse_config
from testkit.fleet import Fleet
from testkit.users import minilm_config
from tests.adversarial.conftest import poll
from tests.conftest import CORPUS, RunningSidecar, index_corpus

INDEX = "adv-ev-kb"
ROUTE = {"name": "kb", "indices": [INDEX], "model": "minilm", "window": 8, "fields": ["title", "text"]}
SURROGATE = b'{"query": {"match": {"text": "memory \\ud800 gpu"}}, "ext": {"ubi": {"client_id": "c\\udfff"}}}'
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def recording(osmem: OsmemServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSidecar]:
    index_corpus(osmem.url, INDEX, CORPUS)
    folder = tmp_path_factory.mktemp("events")
    cfg = minilm_config(
        osmem.url,
        [ROUTE],
        events={
            "sqlite": str(folder / "data" / "events.sqlite"),
            "index": "adv-ev-events",
            "max_text_chars": 100,
        },
        ubi={"write_queries": True, "queries_index": "adv-ev-queries"},
    )
    running = RunningSidecar(parse_config(cfg))
    yield running
    running.close()
    for index in (INDEX, "adv-ev-events", "adv-ev-queries"):
        httpx.delete(f"{osmem.url}/{index}")


def _health(s: RunningSidecar) -> dict[str, Any]:
    return httpx.get(f"{s.admin_url}/_sidecar/health").json()


def test_a_lone_surrogate_is_recorded_by_every_sink_and_the_writer_goes_on(
    recording: RunningSidecar, osmem: OsmemServer
) -> None:
    with httpx.stream("GET", f"{recording.admin_url}/_sidecar/events/stream", timeout=20) as stream:
        lines = stream.iter_lines()
        assert next(lines).startswith(":")  # connected
        r = httpx.post(f"{recording.url}/{INDEX}/_search", content=SURROGATE, headers=JSON)
        assert r.status_code == 200 and r.headers["x-rerank"] == "applied"
        event_id = r.headers["x-rerank-event"]
        for line in lines:  # the live stream carries it (escaped), and is still open
            if line.startswith("data:") and event_id in line:
                assert json.loads(line[5:])["query"].startswith("memory")
                break
    before = _health(recording)["events"]["written"]
    for _ in range(3):  # later searches are still written: the writer did not die
        httpx.post(f"{recording.url}/{INDEX}/_search", json={"query": {"match": {"text": "gpu"}}})
    poll(lambda: _health(recording)["events"]["written"] >= before + 3)
    health = _health(recording)
    assert health["status"] == "ok", health["problems"]
    assert health["events"]["writer"] == "running" and health["events"]["dropped"] == 0
    got = httpx.get(f"{recording.admin_url}/_sidecar/events/{event_id}").json()
    assert got["query"] == "memory \ud800 gpu"
    # the events index and ubi_queries took it too
    poll(lambda: httpx.get(f"{osmem.url}/adv-ev-events/_doc/{event_id}").status_code == 200)
    query_id = r.json()["ext"]["ubi"]["query_id"]
    poll(lambda: httpx.get(f"{osmem.url}/adv-ev-queries/_doc/{query_id}").status_code == 200)


def test_a_removed_data_folder_is_made_again_and_keeps_the_events(recording: RunningSidecar) -> None:
    path = Path(recording.server.config.events.sqlite or "")
    httpx.post(f"{recording.url}/{INDEX}/_search", json={"query": {"match": {"text": "lora"}}})
    poll(lambda: path.exists())
    shutil.rmtree(path.parent)
    r = httpx.post(f"{recording.url}/{INDEX}/_search", json={"query": {"match": {"text": "java"}}})
    event_id = r.headers["x-rerank-event"]

    def stored() -> bool:
        if not path.exists():
            return False
        with sqlite3.connect(path) as db:
            return db.execute("SELECT count(*) FROM events WHERE id = ?", (event_id,)).fetchone()[0] == 1

    poll(stored)
    assert _health(recording)["events"]["reopened"] >= 1


def test_an_event_keeps_a_bounded_part_of_a_huge_query(recording: RunningSidecar) -> None:
    words = "memory " * 200  # 1,400 characters: within max_query_chars, reranked
    r = httpx.post(f"{recording.url}/{INDEX}/_search", json={"query": {"match": {"text": words}}}, timeout=60)
    assert r.status_code == 200
    event = httpx.get(f"{recording.admin_url}/_sidecar/events/{r.headers['x-rerank-event']}").json()
    assert len(event["query"]) == 100  # events.max_text_chars
    huge = "gpu " * 300_000  # 1.2 MB: past max_query_chars, the cluster answers it as it came
    r = httpx.post(f"{recording.url}/{INDEX}/_search", json={"query": {"match": {"text": huge}}}, timeout=60)
    assert r.headers["x-rerank"] == "bypass" and r.headers["x-rerank-reason"] == "query-too-long"


def test_the_event_buffer_is_bounded_in_bytes() -> None:
    from sidecar.events.event import BaselineHit, SearchEvent
    from sidecar.events.store import EventStore

    store = EventStore(None, buffer=2000, buffer_bytes=1024 * 1024)
    for i in range(500):
        store.add(
            SearchEvent(
                id=str(i),
                time=float(i),
                index="x",
                query="q" * 1000,
                baseline=[BaselineHit(rank=r, title="t" * 1000) for r in range(10)],
            )
        )
    assert 0 < len(store.ring) < 500 and store._ring_bytes <= 1024 * 1024
    assert store.ring[-1].id == "499"


def test_a_broken_shm_file_cannot_take_the_sidecar_down(osmem: OsmemServer, tmp_path: Path) -> None:
    """SQLite's WAL maps events.sqlite-shm into memory: a truncated one (a full disk) was a
    SIGBUS that killed the proxy. The sidecar runs in its own process here, so that it can die."""
    index_corpus(osmem.url, INDEX, CORPUS)
    db = tmp_path / "events.sqlite"
    cfg = minilm_config(osmem.url, [ROUTE], events={"sqlite": str(db)}, log_level="warning")
    with Fleet(cfg, 1, tmp_path) as fleet:
        url, admin = fleet.urls[0], fleet.admin_urls[0]
        search = {"query": {"match": {"text": "memory"}}}
        httpx.post(f"{url}/{INDEX}/_search", json=search, timeout=30)
        poll(lambda: httpx.get(f"{admin}/_sidecar/health").json()["events"]["written"] >= 1)
        shm = Path(f"{db}-shm")
        if shm.exists():
            os.truncate(shm, 0)  # what a full disk leaves under the mapping
        else:
            shm.mkdir()  # nothing a write could go through
        for _ in range(10):
            r = httpx.post(f"{url}/{INDEX}/_search", json=search, timeout=30)
            assert r.status_code == 200
        assert fleet.procs[0].poll() is None, fleet.logs[0].read_text()[-2000:]
        poll(lambda: httpx.get(f"{admin}/_sidecar/health").json()["events"]["written"] >= 11)
