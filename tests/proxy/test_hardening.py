"""Production hardening through a real sidecar on loopback: body limit, admin paths, malformed
headers, secrets, the circuit breaker, disconnects, slow clients, shutdown, TLS both ways."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sqlite3
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import uvloop
from aiohttp import web
from osmem_server import OsmemServer

from sidecar.config import parse_config
from tests.conftest import (
    CORPUS,
    BrokenBackend,
    RunningSidecar,
    SlowBackend,
    ThreadedApp,
    index_corpus,
    sidecar_config,
)

FAULTS = {"slow": SlowBackend(), "broken": BrokenBackend()}
SEARCH = {"query": {"match": {"text": "GPU memory"}}, "size": 3}


def raw_request(url: str, data: bytes, timeout: float = 10.0) -> bytes:
    """Send bytes as they are on one connection; the whole answer until the server closes."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture(scope="module")
def small(osmem: OsmemServer) -> Iterator[RunningSidecar]:
    """A sidecar with a 64 KiB request body limit."""
    cfg = sidecar_config(osmem.url, max_request_body_bytes=64 * 1024, max_search_body_bytes=4096)
    running = RunningSidecar(cfg, backends=FAULTS)
    yield running
    running.close()


def _bulk(docs: int, pad: int) -> bytes:
    lines = []
    for i in range(docs):
        lines.append(json.dumps({"index": {"_index": "limits"}}))
        lines.append(json.dumps({"text": f"doc {i} " + "x" * pad}))
    return ("\n".join(lines) + "\n").encode()


def test_a_body_over_the_limit_is_413_and_nothing_is_written(
    small: RunningSidecar, direct: httpx.Client
) -> None:
    direct.delete("/limits")
    direct.put("/limits")
    with httpx.Client(base_url=small.url, timeout=30) as c:
        big = _bulk(100, 1000)  # about 100 KB
        ctype = {"content-type": "application/x-ndjson"}
        r = c.post("/_bulk?refresh=true", content=big, headers=ctype)
        assert r.status_code == 413
        err = r.json()
        assert err["status"] == 413 and err["error"]["type"] == "content_too_long_exception"
        assert "max_request_body_bytes" in err["error"]["reason"]

        def chunks() -> Iterator[bytes]:  # no content-length: counted as it streams
            for i in range(0, len(big), 8192):
                yield big[i : i + 8192]

        r = c.post("/_bulk?refresh=true", content=chunks(), headers=ctype)
        assert r.status_code == 413 and r.json()["error"]["type"] == "content_too_long_exception"
        big_search = {"query": {"match": {"text": "x " * 40_000}}}  # past both limits: 413, not a bypass
        r = c.post("/kb/_search", json=big_search)
        assert r.status_code == 413
        r = c.post("/_bulk?refresh=true", content=_bulk(10, 100), headers=ctype)  # under the limit
        assert r.status_code == 200 and not r.json()["errors"]
    direct.post("/limits/_refresh")
    assert direct.get("/limits/_count").json()["count"] == 10  # the refused bodies wrote nothing


@pytest.mark.parametrize(
    "path",
    [
        "/_sidecar/config",
        "/_sidecar",
        "/%5Fsidecar/config",
        "/%5fsidecar/health",
        "/%255Fsidecar/config",
        "//_sidecar/config",
        "/./_sidecar/config",
        "/kb/../_sidecar/config",
        "/kb/%2E%2E/_sidecar/events",
        "/_SIDECAR/config",
        "/%2F_sidecar/config",
        "/kb\\..\\_sidecar/config",
    ],
)
def test_the_admin_api_cannot_be_reached_through_the_proxy(small: RunningSidecar, path: str) -> None:
    for method in ("GET", "PUT", "POST"):
        answer = raw_request(
            small.url,
            f"{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode(),
        )
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400"), (path, answer[:200])
        err = json.loads(body)
        assert err["error"]["reason"] == "the admin API is not served on the proxy listener"


def test_paths_that_only_contain_sidecar_pass_through(small: RunningSidecar, direct: httpx.Client) -> None:
    index_corpus(direct.base_url.__str__().rstrip("/"), "my_sidecar", CORPUS[:2])
    with httpx.Client(base_url=small.url, timeout=30) as c:
        assert c.get("/my_sidecar/_count").json()["count"] == 2


@pytest.mark.parametrize(
    "header",
    [b"x-test: a\rb", b"x-test: a\nb", b"x-test: a\r\nx-injected: 1\x00", b"x-te st: 1", b"x-test: \x7f\x00"],
)
def test_header_values_with_cr_lf_or_controls_are_400_in_opensearch_shape(
    small: RunningSidecar, header: bytes
) -> None:
    body = json.dumps(SEARCH).encode()
    request = (
        b"POST /kb/_search HTTP/1.1\r\nhost: x\r\n" + header + b"\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    answer = raw_request(small.url, request)
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer[:200]
    err = json.loads(payload)
    assert err["status"] == 400 and err["error"]["type"] == "http_parse_exception"
    with httpx.Client(base_url=small.url, timeout=30) as c:  # and the sidecar serves on
        assert c.post("/kb/_search", json=SEARCH).status_code == 200


def test_a_secret_in_authorization_is_nowhere_but_the_cluster(
    osmem: OsmemServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cr3t-Zq8Xw1-never-stored"
    db = tmp_path / "events.db"
    caplog.set_level(logging.DEBUG)
    running = RunningSidecar(
        sidecar_config(osmem.url, events={"sqlite": str(db), "buffer": 20}), backends=FAULTS
    )
    try:
        auths = [f"Bearer {secret}", f"Basic {secret}", f"ApiKey {secret}"]
        with httpx.Client(base_url=running.url, timeout=30) as c:
            for auth in auths:
                h = {"authorization": auth, "x-opaque-id": "t"}
                assert c.post("/kb/_search", json=SEARCH, headers=h).headers["x-rerank"] == "applied"
                c.post("/plain/_search", json=SEARCH, headers=h)  # bypass
                c.post("/kb/_search", content=b"{not json", headers={**h, "content-type": "application/json"})
                c.post(
                    "/kb/_msearch",
                    content=b'{}\n{"query":{"match":{"text":"gpu"}}}\n',
                    headers={**h, "content-type": "application/x-ndjson"},
                )
                c.get("/kb/_doc/1", headers=h)
        admin = httpx.Client(base_url=running.admin_url, timeout=30)
        answers = [
            admin.get(p).text
            for p in ("/_sidecar/health", "/_sidecar/config", "/_sidecar/stats", "/_sidecar/metrics")
        ]
        events = admin.get("/_sidecar/events", params={"limit": 100}).json()["events"]
        assert len(events) >= 6
        answers += [admin.get(f"/_sidecar/events/{e['id']}").text for e in events]
        answers.append(json.dumps(events))
    finally:
        running.close()
    for text in answers:
        assert secret not in text
    assert secret not in caplog.text
    assert secret.encode() not in db.read_bytes()
    for extra in tmp_path.glob("events.db*"):  # the WAL too
        assert secret.encode() not in extra.read_bytes()


class FlakyBackend(SlowBackend):
    """Raises while ``failing``; counts calls."""

    name = "flaky"

    def __init__(self) -> None:
        super().__init__(0.0)
        self.failing = True
        self.calls = 0

    def score(self, query: str, documents: Sequence[str], instruction: str | None = None) -> list[float]:
        self.calls += 1
        if self.failing:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return [float(len(d)) for d in documents]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_every_accepted_connection_has_tcp_nodelay(osmem: OsmemServer, loop: str) -> None:
    """Without TCP_NODELAY a built response's body waited behind its headers for the client's
    delayed ACK (40 ms a search on Linux); asyncio, which eval and bench run on, sets it only
    on sockets that say they are TCP."""
    event_loop = asyncio.new_event_loop() if loop == "asyncio" else uvloop.new_event_loop()
    running = RunningSidecar(sidecar_config(osmem.url), backends=FAULTS, loop=event_loop)
    try:
        with httpx.Client(base_url=running.url) as client:  # keep-alive: the connection stays open
            assert client.post("/kb/_search", json=SEARCH).headers["x-rerank"] == "applied"
            state = running.server.proxy.server_state
            sockets = [c.transport.get_extra_info("socket") for c in state.connections]
            assert sockets
            assert all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in sockets)
    finally:
        running.close()


def test_the_circuit_opens_after_repeated_errors_then_probes_and_closes(osmem: OsmemServer) -> None:
    flaky = FlakyBackend()
    cfg = sidecar_config(
        osmem.url,
        models={
            "flaky": {
                "backend": "bi-encoder",
                "model": "unused",
                "circuit_failures": 3,
                "circuit_cooldown_s": 0.5,
            }
        },
        routes=[{"indices": ["kb"], "model": "flaky", "window": 10, "fields": ["title", "text"]}],
    )
    running = RunningSidecar(cfg, backends={"flaky": flaky})
    try:
        with httpx.Client(base_url=running.url, timeout=30) as c:

            def search(q: str) -> httpx.Response:
                r = c.post("/kb/_search", json={"query": {"match": {"text": q}}})
                assert r.status_code == 200
                return r

            reasons = [search(f"gpu {i}").headers["x-rerank-reason"] for i in range(3)]
            assert reasons == ["model-error"] * 3 and flaky.calls == 3
            r = search("gpu 4")
            assert r.headers["x-rerank"] == "fallback" and r.headers["x-rerank-reason"] == "circuit-open"
            assert flaky.calls == 3  # skipped: not even tried
            health = httpx.get(f"{running.admin_url}/_sidecar/health").json()
            assert health["models"]["flaky"]["circuit"] == {"state": "open", "failures": 3, "opens": 1}
            time.sleep(0.6)
            assert search("gpu 5").headers["x-rerank-reason"] == "model-error"  # the probe fails
            assert flaky.calls == 4 and search("gpu 6").headers["x-rerank-reason"] == "circuit-open"
            time.sleep(0.6)
            flaky.failing = False
            assert search("gpu 7").headers["x-rerank"] == "applied"  # the probe succeeds
            assert search("gpu 8").headers["x-rerank"] == "applied"
            health = httpx.get(f"{running.admin_url}/_sidecar/health").json()
            assert health["models"]["flaky"]["circuit"]["state"] == "closed"
    finally:
        running.close()


class CountingSlow(SlowBackend):
    """Sleeps ``delay_s`` per call; records each query it scored."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(delay_s)
        self.queries: list[str] = []

    def score(self, query: str, documents: Sequence[str], instruction: str | None = None) -> list[float]:
        self.queries.append(query)
        time.sleep(self.delay_s)
        return [float(len(d)) for d in documents]


@pytest.fixture
def slow_sidecar(osmem: OsmemServer, tmp_path: Path) -> Iterator[tuple[RunningSidecar, CountingSlow, Path]]:
    backend = CountingSlow(1.0)
    db = tmp_path / "events.db"
    cfg = sidecar_config(
        osmem.url,
        models={"slow": {"backend": "bi-encoder", "model": "unused"}},
        routes=[
            {
                "indices": ["kb"],
                "model": "slow",
                "window": 5,
                "fields": ["title", "text"],
                "timeout_ms": 10_000,
            }
        ],
        events={"sqlite": str(db), "buffer": 1000},
    )
    running = RunningSidecar(cfg, backends={"slow": backend})
    yield running, backend, db
    running.close()


def _search_in_thread(url: str, query: str, out: dict[str, Any], timeout: float = 30) -> threading.Thread:
    def run() -> None:
        try:
            r = httpx.post(
                f"{url}/kb/_search", json={"query": {"match": {"text": query}}, "size": 3}, timeout=timeout
            )
            out[query] = r
        except httpx.HTTPError as e:
            out[query] = e

    t = threading.Thread(target=run)
    t.start()
    return t


def test_a_client_that_disconnects_frees_its_queued_work(
    slow_sidecar: tuple[RunningSidecar, CountingSlow, Path],
) -> None:
    running, backend, _ = slow_sidecar
    out: dict[str, Any] = {}
    first = _search_in_thread(running.url, "gpu first", out)
    time.sleep(0.3)  # the model is busy with the first search for a second
    gone = _search_in_thread(running.url, "gpu leaves", out, timeout=0.3)  # queued, then the client leaves
    gone.join()
    assert isinstance(out["gpu leaves"], httpx.TimeoutException), {
        k: v for k, v in out["gpu leaves"].headers.items() if k.startswith("x-rerank")
    }
    first.join()
    assert out["gpu first"].headers["x-rerank"] == "applied"
    time.sleep(1.5)
    assert backend.queries == ["gpu first"]  # the departed client's search never reached the model
    assert running.server.runtime is not None and running.server.runtime.scorers["slow"].queue_depth == 0


def test_a_slow_client_does_not_hold_up_others(small: RunningSidecar) -> None:
    body = json.dumps(SEARCH).encode()
    head = (
        b"POST /kb/_search HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    host, port = small.url.removeprefix("http://").split(":")
    answer: list[bytes] = []

    def trickle() -> None:
        with socket.create_connection((host, int(port)), timeout=30) as s:
            s.sendall(head)
            for i in range(len(body)):  # one byte every 50 ms: about 2 s
                s.sendall(body[i : i + 1])
                time.sleep(0.05)
            while chunk := s.recv(65536):
                answer.append(chunk)

    t = threading.Thread(target=trickle)
    t.start()
    took = []
    with httpx.Client(base_url=small.url, timeout=30) as c:
        for i in range(10):
            started = time.monotonic()
            assert (
                c.post("/kb/_search", json={"query": {"match": {"text": f"memory {i}"}}}).status_code == 200
            )
            took.append(time.monotonic() - started)
    assert t.is_alive() and max(took) < 1.0  # all done while the slow body is still arriving
    t.join()
    assert b"".join(answer).startswith(b"HTTP/1.1 200")


def test_graceful_shutdown_finishes_in_flight_searches_and_flushes_events(
    slow_sidecar: tuple[RunningSidecar, CountingSlow, Path],
) -> None:
    running, _backend, db = slow_sidecar
    out: dict[str, Any] = {}
    t = _search_in_thread(running.url, "gpu in flight", out)
    time.sleep(0.4)
    stopper = threading.Thread(target=running.close)
    stopper.start()
    time.sleep(0.2)
    with pytest.raises(httpx.ConnectError):  # new connections are refused meanwhile
        httpx.post(f"{running.url}/kb/_search", json=SEARCH, timeout=5)
    t.join()
    stopper.join()
    r = out["gpu in flight"]
    assert isinstance(r, httpx.Response) and r.status_code == 200 and r.headers["x-rerank"] == "applied"
    with sqlite3.connect(db) as conn:
        queries = [row[0] for row in conn.execute("select json_extract(body, '$.query') from events")]
    assert "gpu in flight" in queries


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _pem_files(ca: trustme.CA, tmp: Path) -> tuple[Path, Path, Path]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key, ca_file = tmp / "cert.pem", tmp / "key.pem", tmp / "ca.pem"
    chain.write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
    key.write_bytes(cert.private_key_pem.bytes())
    ca.cert_pem.write_to_path(str(ca_file))
    return chain, key, ca_file


def test_tls_on_the_listener(osmem: OsmemServer, ca: trustme.CA, tmp_path: Path) -> None:
    chain, key, ca_file = _pem_files(ca, tmp_path)
    running = RunningSidecar(
        sidecar_config(osmem.url, tls={"certfile": str(chain), "keyfile": str(key)}), backends=FAULTS
    )
    try:
        assert running.url.startswith("https://")
        with httpx.Client(base_url=running.url, verify=str(ca_file), timeout=30) as c:
            r = c.post("/kb/_search", json=SEARCH)
            assert r.status_code == 200 and r.headers["x-rerank"] == "applied"
        with pytest.raises(httpx.ConnectError):  # an unknown CA is refused by the client
            httpx.get(f"{running.url}/kb/_count", timeout=5)
        plain = running.url.replace("https://", "http://")
        with pytest.raises(httpx.HTTPError):  # plain http gets no answer from a TLS listener
            httpx.get(f"{plain}/kb/_count", timeout=5)
    finally:
        running.close()


@pytest.fixture
def tls_upstream(ca: trustme.CA, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS server on loopback answering like a cluster's root endpoint, certified by ``ca``."""
    chain, key, ca_file = _pem_files(ca, tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(chain), str(key))

    async def root(request: web.Request) -> web.Response:
        return web.json_response({"name": "tls-node", "tagline": "The OpenSearch Project"})

    app = web.Application()
    app.router.add_get("/", root)
    server = ThreadedApp(app, ssl_context=ctx)
    yield f"https://127.0.0.1:{server.port}", ca_file
    server.stop()


@pytest.mark.parametrize("mode", ["ca_certs", "system store", "verify off"])
def test_tls_to_the_upstream(tls_upstream: tuple[str, Path], mode: str) -> None:
    url, ca_file = tls_upstream
    upstream: dict[str, Any] = {"url": url}
    if mode == "ca_certs":
        upstream["ca_certs"] = str(ca_file)
    elif mode == "verify off":
        upstream["verify"] = False
    running = RunningSidecar(
        parse_config({"listen": "127.0.0.1:0", "admin": {"listen": "127.0.0.1:0"}, "upstream": upstream})
    )
    try:
        r = httpx.get(f"{running.url}/", timeout=30)
        if mode == "system store":  # a private CA the system does not trust: refused, in OpenSearch's shape
            assert r.status_code == 502 and r.json()["error"]["type"] == "upstream_unavailable_exception"
            assert "certificate" in r.json()["error"]["reason"].lower()
        else:
            assert r.status_code == 200 and r.json()["name"] == "tls-node"
    finally:
        running.close()
