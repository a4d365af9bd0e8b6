"""Events: one per search, in SQLite across restarts, live over SSE; stats and Prometheus metrics."""

from __future__ import annotations

import json
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from opensearchpy import OpenSearch
from osmem_server import OsmemServer
from prometheus_client.parser import text_string_to_metric_families

from sidecar.events.event import SearchEvent
from sidecar.events.store import EventStore
from tests.conftest import BrokenBackend, RunningSidecar, sidecar_config

QUERY = {"query": {"match": {"text": "which LoRA rank should I use"}}, "size": 3}
SECRET = "Bearer do-not-store-me"


def _start(osmem: OsmemServer, db: Path) -> RunningSidecar:
    return RunningSidecar(
        sidecar_config(osmem.url, events={"sqlite": str(db), "buffer": 50}),
        backends={"slow": BrokenBackend(), "broken": BrokenBackend()},
    )


def _events(running: RunningSidecar, **params: Any) -> list[dict[str, Any]]:
    r = httpx.get(running.admin_url + "/_sidecar/events", params=params)
    assert r.status_code == 200, r.text
    return list(r.json()["events"])


def test_every_search_leaves_an_event_that_survives_a_restart(osmem: OsmemServer, tmp_path: Path) -> None:
    db = tmp_path / "events.sqlite"
    running = _start(osmem, db)
    try:
        client = OpenSearch(hosts=[running.url], headers={"Authorization": SECRET})
        applied = client.search(index="kb", body=QUERY)
        client.search(index="broken", body=QUERY)
        client.search(index="plain", body=QUERY)
        client.search(index="kb", body={**QUERY, "size": 0})
        client.msearch(body=[{"index": "kb"}, QUERY, {"index": "plain"}, QUERY])
        events = _events(running, limit=10)
        assert [e["status"] for e in events[:6]].count("applied") == 2
        by = {(e["status"], e["reason"]) for e in events}
        assert {
            ("applied", ""),
            ("fallback", "model-error"),
            ("bypass", "no-route"),
            ("bypass", "size-0"),
        } <= by
        first = _events(running, status="applied", index="kb")[-1]
        assert first["query"] == "which LoRA rank should I use"
        assert len(first["baseline"]) == min(12, applied["hits"]["total"]["value"])
        assert first["baseline"][0]["rank"] == 1 and first["baseline"][0]["title"]
        assert [f["id"] for f in first["final"][:3]] == [h["_id"] for h in applied["hits"]["hits"]]
        assert {"upstream_ms", "queue_ms", "model_ms", "total_ms"} <= set(first["timings"])
        assert first["model"] == "minilm" and first["window"] == 12
        one = httpx.get(running.admin_url + f"/_sidecar/events/{first['id']}").json()
        assert one == first
        assert httpx.get(running.admin_url + "/_sidecar/events/nope").status_code == 404
        ids = {e["id"] for e in events}
    finally:
        running.close()
    assert "do-not-store-me" not in db.read_bytes().decode("utf-8", "replace")
    again = _start(osmem, db)
    try:
        assert ids <= {e["id"] for e in _events(again, limit=100)}
        assert "do-not-store-me" not in json.dumps(_events(again, limit=100))
    finally:
        again.close()


def test_sse_delivers_a_search_within_a_second(osmem: OsmemServer, tmp_path: Path) -> None:
    running = _start(osmem, tmp_path / "e.sqlite")
    received: list[tuple[float, dict[str, Any]]] = []

    def listen() -> None:
        with httpx.stream("GET", running.admin_url + "/_sidecar/events/stream", timeout=10) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    received.append((time.monotonic(), json.loads(line[6:])))
                    return

    try:
        t = threading.Thread(target=listen, daemon=True)
        t.start()
        time.sleep(0.3)
        sent = time.monotonic()
        r = httpx.post(running.url + "/kb/_search", json=QUERY)
        t.join(5)
        assert received, "no event arrived"
        at, event = received[0]
        assert event["id"] == r.headers["x-rerank-event"]
        assert at - sent < 1.0
    finally:
        running.close()


def test_stats_and_metrics(osmem: OsmemServer, tmp_path: Path) -> None:
    running = _start(osmem, tmp_path / "e.sqlite")
    try:
        for _ in range(3):
            httpx.post(running.url + "/kb/_search", json=QUERY)
        httpx.post(running.url + "/plain/_search", json=QUERY)
        stats = httpx.get(running.admin_url + "/_sidecar/stats").json()
        assert stats["searches"] == 4 and stats["bypass_rate"] == 0.25
        assert stats["latency_ms"]["total"]["p50"] > 0
        assert stats["models"]["minilm"]["cache_hit_rate"] > 0  # the same search three times
        text = httpx.get(running.admin_url + "/_sidecar/metrics").text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        searches = {
            tuple(sorted(s.labels.items())): s.value
            for s in families["rerank_sidecar_searches"].samples
            if s.name.endswith("_total")
        }
        assert searches[(("reason", ""), ("status", "applied"))] == 3
        assert searches[(("reason", "no-route"), ("status", "bypass"))] == 1
        assert "rerank_sidecar_stage_seconds" in families
        assert "rerank_sidecar_queue_depth" in families
    finally:
        running.close()


def test_the_store_stays_within_its_bounds(tmp_path: Path) -> None:
    db = tmp_path / "bounded.sqlite"
    store = EventStore(str(db), buffer=20, max_events=100, max_age_days=1)
    store.open()
    now = time.time()
    for i in range(300):
        age = 3 * 86400 if i < 50 else 0  # the first 50 are older than max_age_days
        store.add(
            SearchEvent.model_validate(
                {
                    "id": f"e{i}",
                    "time": now - age + i * 0.001,
                    "index": "kb",
                    "status": "applied",
                    "timings": {},
                }
            )
        )
    store.close()
    assert len(store.ring) == 20
    with sqlite3.connect(db) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM events").fetchone()
        (oldest,) = conn.execute("SELECT MIN(time) FROM events").fetchone()
    assert count <= 100
    assert oldest > now - 86400


def test_an_unwritable_store_does_not_break_searches(osmem: OsmemServer, tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where a directory should be")
    running = RunningSidecar(
        sidecar_config(osmem.url, events={"sqlite": str(blocked / "e.sqlite")}),
        backends={"slow": BrokenBackend(), "broken": BrokenBackend()},
    )
    try:
        r = httpx.post(running.url + "/kb/_search", json=QUERY)
        assert r.status_code == 200 and r.headers["x-rerank"] == "applied"
        health = _health_once(running, "error")
        assert health["status"] == "degraded" and "e.sqlite" in health["events"]["error"]
        assert _events(running, limit=5)[0]["status"] == "applied"
    finally:
        running.close()


def _health_once(running: RunningSidecar, key: str, timeout_s: float = 10) -> dict[str, Any]:
    """The health once ``events.<key>`` is set (or the last one seen, after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    health: dict[str, Any] = {}
    while time.monotonic() < deadline:
        health = httpx.get(running.admin_url + "/_sidecar/health").json()
        if health["events"][key]:
            break
        time.sleep(0.05)
    return health


@pytest.mark.parametrize("params", [{"limit": "x"}, {"limit": "0"}, {"before": "yesterday"}])
def test_bad_event_queries_are_400(osmem: OsmemServer, tmp_path: Path, params: dict[str, str]) -> None:
    running = _start(osmem, tmp_path / "e.sqlite")
    try:
        r = httpx.get(running.admin_url + "/_sidecar/events", params=params)
        assert r.status_code == 400 and r.json()["error"]["type"] == "illegal_argument_exception"
    finally:
        running.close()


def test_events_can_also_go_to_an_opensearch_index(osmem: OsmemServer) -> None:
    running = RunningSidecar(
        sidecar_config(osmem.url, events={"index": "sidecar-events"}),
        backends={"slow": BrokenBackend(), "broken": BrokenBackend()},
    )
    try:
        ids = [
            httpx.post(running.url + "/kb/_search", json=QUERY).headers["x-rerank-event"] for _ in range(3)
        ]
    finally:
        running.close()  # flushes the writer
    httpx.post(osmem.url + "/sidecar-events/_refresh")
    for event_id in ids:
        doc = httpx.get(f"{osmem.url}/sidecar-events/_doc/{event_id}").json()
        assert doc["found"] and doc["_source"]["status"] == "applied" and "@timestamp" in doc["_source"]


def test_an_unreachable_event_cluster_degrades_health_not_searches(osmem: OsmemServer) -> None:
    dead = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    running = RunningSidecar(
        sidecar_config(osmem.url, events={"index": "sidecar-events", "url": dead}),
        backends={"slow": BrokenBackend(), "broken": BrokenBackend()},
    )
    try:
        r = httpx.post(running.url + "/kb/_search", json=QUERY)
        assert r.status_code == 200 and r.headers["x-rerank"] == "applied"
        health = _health_once(running, "sink_error")
        assert health["status"] == "degraded"
        assert "bulk into sidecar-events failed" in health["events"]["sink_error"]
    finally:
        running.close()


def test_a_full_disk_does_not_break_searches(osmem: OsmemServer, tmp_path: Path) -> None:
    """The sidecar runs as its own process whose files may not grow past 256 KB (RLIMIT_FSIZE,
    SIGXFSZ ignored): the kernel refuses the event store's writes as it would on a full disk."""
    db = tmp_path / "events.sqlite"
    proxy_port, admin_port = _free_port(), _free_port()
    cfg = {
        "listen": f"127.0.0.1:{proxy_port}",
        "admin": {"listen": f"127.0.0.1:{admin_port}"},
        "upstream": {"url": osmem.url},
        "events": {"sqlite": str(db), "buffer": 20},
        "models": {"minilm": {"backend": "bi-encoder", "model": "all-MiniLM-L6-v2", "device": "cpu"}},
        "routes": [{"indices": ["kb"], "model": "minilm", "window": 16, "fields": ["title", "text"]}],
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))

    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))

    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar.cli", "serve", "--config", str(tmp_path / "c.yaml")],
        preexec_fn=limit_files,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        admin = f"http://127.0.0.1:{admin_port}/_sidecar"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{admin}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, "the sidecar did not start"
                time.sleep(0.2)
        with httpx.Client(base_url=f"http://127.0.0.1:{proxy_port}", timeout=30) as c:
            for i in range(150):  # each event holds 16 hits before and after: well past 256 KB
                body = {"query": {"match": {"text": f"gpu memory lora rank pod {i} " + "x" * 400}}, "size": 3}
                r = c.post("/kb/_search", json=body)
                assert r.status_code == 200 and r.headers["x-rerank"] == "applied"
                if i % 20 == 19:
                    time.sleep(0.3)  # let the writer catch up
        health: dict[str, Any] = {}
        while time.monotonic() < deadline:
            health = httpx.get(f"{admin}/health").json()
            if health["events"]["error"]:
                break
            time.sleep(0.1)
        assert health["status"] == "degraded"
        assert "cannot write" in health["events"]["error"] and "full" in health["events"]["error"]
        assert (
            len(httpx.get(f"{admin}/events", params={"limit": 20}).json()["events"]) == 20
        )  # memory keeps them
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "event store: cannot write" in err and "events not stored" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_redacted_events_keep_no_query_or_document_text(osmem: OsmemServer, tmp_path: Path) -> None:
    db = tmp_path / "e.sqlite"
    running = RunningSidecar(
        sidecar_config(osmem.url, events={"sqlite": str(db), "redact": True}),
        backends={"slow": BrokenBackend(), "broken": BrokenBackend()},
    )
    try:
        headers = {"X-Rerank-Query": "secret words", "X-Rerank-Explain": "1"}
        r = httpx.post(running.url + "/kb/_search", json=QUERY, headers=headers)
        assert r.status_code == 200 and r.headers["x-rerank"] == "applied"
        titles = [h["_source"]["title"] for h in r.json()["hits"]["hits"]]
        event = _events(running, limit=1)[0]
        assert event["query"] is None and event["rules"] == [] and set(event["headers"].values()) == {""}
        assert event["baseline"] and all(b["title"] == "" for b in event["baseline"])
        assert all(b.get("model_score") is not None for b in event["baseline"])  # previews still work
        assert event["final"] and event["timings"]["total_ms"] > 0
    finally:
        running.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("e.sqlite*")).decode("utf-8", "replace")
    assert "applied" in stored  # the events are there
    assert "secret words" not in stored and "LoRA" not in stored
    assert not any(t in stored for t in titles)


def test_stopping_ends_the_live_stream_instead_of_waiting_for_its_client(
    osmem: OsmemServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    running = _start(osmem, tmp_path / "e.sqlite")
    lines: list[str] = []
    ended = threading.Event()

    def listen() -> None:
        try:
            with httpx.stream("GET", running.admin_url + "/_sidecar/events/stream", timeout=60) as r:
                for line in r.iter_lines():
                    lines.append(line)
        except httpx.HTTPError:
            pass
        ended.set()

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not any(ln.startswith(": connected") for ln in lines) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lines, "the stream did not open"
    running.close()
    assert ended.wait(5), "the stream outlived the sidecar"
    assert "graceful shutdown exceeded" not in caplog.text
