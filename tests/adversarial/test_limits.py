"""Defects 3, 5, 7 and the WebSocket upgrade of 16: every size and every wait of a client is
bounded, and no one request holds the event loop."""

from __future__ import annotations

import gzip
import json
import resource
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from osmem_server import OsmemServer

from sidecar.config import parse_config
from testkit.users import minilm_config
from tests.adversarial.conftest import host_port, poll, raw
from tests.conftest import CORPUS, RunningSidecar, index_corpus

INDEX = "adv-lim-kb"
ROUTE = {"name": "kb", "indices": [INDEX], "model": "minilm", "window": 8, "fields": ["title", "text"]}
LIMITS = {
    "header_timeout_s": 0.5,
    "body_timeout_s": 0.5,
    "keep_alive_s": 1.0,
    "max_connections": 40,
    "max_reranked_subsearches": 5,
}


@pytest.fixture(scope="module")
def limited(osmem: OsmemServer) -> Iterator[RunningSidecar]:
    index_corpus(osmem.url, INDEX, CORPUS)
    cfg = minilm_config(osmem.url, [ROUTE], limits=LIMITS, max_search_body_bytes=1024 * 1024)
    running = RunningSidecar(parse_config(cfg))
    yield running
    running.close()
    httpx.delete(f"{osmem.url}/{INDEX}")


def _error(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, json.loads(body)


def test_headers_past_the_limit_get_431(limited: RunningSidecar) -> None:
    big = b"GET / HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 20_000 + b"\r\n\r\n"
    many = b"GET / HTTP/1.1\r\nhost: x\r\n" + b"".join(b"x-%d: 1\r\n" % i for i in range(10_000)) + b"\r\n"
    for request in (big, many):
        status, err = _error(raw(limited.url, request))
        assert status == 431 and err["error"]["type"] == "too_long_http_header_exception"  # type: ignore[index]


def test_headers_that_trickle_in_get_408(limited: RunningSidecar) -> None:
    with socket.create_connection(host_port(limited.url), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n")
        started = time.monotonic()
        answer = s.recv(65536)
        assert time.monotonic() - started < 3
    status, err = _error(answer)
    assert status == 408 and "header_timeout_s" in err["error"]["reason"]  # type: ignore[index]


def test_a_body_that_stalls_gets_408(limited: RunningSidecar) -> None:
    with socket.create_connection(host_port(limited.url), timeout=5) as s:
        s.sendall(
            f"POST /{INDEX}/_search HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            'content-length: 100\r\n\r\n{"query":'.encode()
        )
        answer = s.recv(65536)
    status, err = _error(answer)
    assert status == 408 and "body_timeout_s" in err["error"]["reason"]  # type: ignore[index]


def test_a_silent_connection_and_an_idle_keep_alive_are_closed(limited: RunningSidecar) -> None:
    with socket.create_connection(host_port(limited.url), timeout=5) as s:
        started = time.monotonic()
        assert s.recv(1) == b""  # closed by the sidecar, nothing said
        assert time.monotonic() - started < 3
    with socket.create_connection(host_port(limited.url), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        first = s.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        while s.recv(65536):
            pass
        assert time.monotonic() - started < 4  # keep_alive_s: 1


def test_connections_past_the_most_get_503_and_the_rest_still_serve(limited: RunningSidecar) -> None:
    held = []
    refused = 0
    try:
        for _ in range(60):
            s = socket.create_connection(host_port(limited.url), timeout=5)
            held.append(s)
        time.sleep(0.2)
        for s in held:
            s.settimeout(0.05)
            try:
                data = s.recv(65536)
            except TimeoutError:
                continue
            if data.startswith(b"HTTP/1.1 503"):
                refused += 1
                assert b"too_many_connections_exception" in data
        assert refused >= 15
    finally:
        for s in held:
            s.close()
    poll(lambda: httpx.get(f"{limited.url}/", timeout=5).status_code == 200)


def test_the_open_files_limit_is_raised_to_the_hard_one(limited: RunningSidecar) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == hard or hard == resource.RLIM_INFINITY


def test_a_decompression_bomb_is_refused_while_it_inflates(limited: RunningSidecar) -> None:
    body = b'{"query": {"match": {"text": "' + b"a " * 2_000_000 + b'"}}}'  # 4 MB from 4 KB
    bomb = gzip.compress(body)
    assert len(bomb) < 10_000
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    r = httpx.post(f"{limited.url}/{INDEX}/_search", content=bomb, headers=headers, timeout=10)
    assert r.status_code == 413 and r.json()["error"]["type"] == "content_too_long_exception"
    ndjson = {"content-type": "application/x-ndjson", "content-encoding": "gzip"}
    lines = gzip.compress(b"{}\n" + body + b"\n")
    r = httpx.post(f"{limited.url}/{INDEX}/_msearch", content=lines, headers=ndjson, timeout=10)
    assert r.status_code == 413


def test_a_widened_body_past_the_limit_goes_as_it_came(limited: RunningSidecar) -> None:
    limit = 1024 * 1024  # max_search_body_bytes in this sidecar
    body: dict[str, object] = {"query": {"match": {"text": "memory"}}, "post_filter": {"terms": {"tag": []}}}
    compact = json.dumps(body, separators=(",", ":"))
    pad = limit - len(compact) - 10  # the client's body fits; the widened one (size, _source) does not
    body["post_filter"] = {"terms": {"tag": ["x" * pad]}}
    data = json.dumps(body, separators=(",", ":")).encode()
    assert len(data) <= limit
    r = httpx.post(
        f"{limited.url}/{INDEX}/_search",
        content=data,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 200 and r.headers["x-rerank-reason"] == "body-too-large"


def test_a_large_msearch_does_not_stall_other_requests(limited: RunningSidecar) -> None:
    line = json.dumps({"query": {"match": {"text": "memory gpu"}}, "size": 8})
    body = ("".join(f'{{"index": "{INDEX}"}}\n{line}\n' for _ in range(1000))).encode()
    result: dict[str, httpx.Response] = {}

    def big() -> None:
        result["r"] = httpx.post(
            f"{limited.url}/_msearch",
            content=body,
            headers={"content-type": "application/x-ndjson"},
            timeout=60,
        )

    worker = threading.Thread(target=big)
    worker.start()
    waits = []
    with httpx.Client(base_url=limited.url, timeout=30) as c:
        while worker.is_alive() and len(waits) < 200:
            started = time.monotonic()
            assert c.get(f"/{INDEX}/_doc/1").status_code == 200
            waits.append(time.monotonic() - started)
    worker.join(60)
    r = result["r"]
    assert r.status_code == 200 and len(r.json()["responses"]) == 1000
    per_sub = r.headers["x-rerank-msearch"].split(",")
    assert per_sub.count("applied") == 5 and per_sub.count("bypass:msearch-cap") == 995
    assert max(waits) < 1.0, sorted(waits)[-5:]  # before: one GET waited 9.99 s


def test_a_websocket_upgrade_gets_400_in_opensearch_shape(limited: RunningSidecar) -> None:
    r = httpx.get(
        f"{limited.url}/",
        headers={
            "connection": "upgrade",
            "upgrade": "websocket",
            "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
            "sec-websocket-version": "13",
        },
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "illegal_argument_exception"
