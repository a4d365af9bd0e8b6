"""Pass-through streams bodies both ways: a 200 MB _bulk is never held in memory."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from sidecar.server import bind
from tests.conftest import RunningSidecar, sidecar_config

MB = 1024 * 1024


async def sink_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An upstream that counts request bytes and can stream a big response."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/headers":
        body = json.dumps([[k.decode(), v.decode()] for k, v in scope["headers"]]).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    if scope["path"] == "/big":
        size = int(dict(x.split("=") for x in scope["query_string"].decode().split("&"))["mb"])
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")],
            }
        )
        chunk = b"x" * MB
        for _ in range(size):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    count = 0
    while True:
        msg = await receive()
        count += len(msg.get("body", b""))
        if not msg.get("more_body"):
            break
    body = json.dumps({"received": count}).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def sink() -> Iterator[str]:
    sock = bind("127.0.0.1:0")
    server = uvicorn.Server(uvicorn.Config(sink_app, lifespan="off", log_config=None, access_log=False))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(
        target=lambda: loop.run_until_complete(server.serve(sockets=[sock])), daemon=True
    )
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)


def _rss() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Samples this process's resident memory every few milliseconds."""

    def __enter__(self) -> PeakRss:
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / MB


@pytest.fixture(scope="module")
def stream_sidecar(sink: str) -> Iterator[RunningSidecar]:
    running = RunningSidecar(
        sidecar_config(sink, routes=[], models={}, max_request_body_bytes=300 * 1024 * 1024)
    )
    yield running
    running.close()


def test_a_200mb_bulk_streams_through(stream_sidecar: RunningSidecar) -> None:
    total = 200 * MB
    line = (json.dumps({"index": {"_index": "x"}}) + "\n" + json.dumps({"t": "y" * 1000}) + "\n").encode()
    per_chunk = (MB // len(line)) * line

    def body() -> Iterator[bytes]:
        sent = 0
        while sent < total:
            part = per_chunk[: total - sent]
            sent += len(part)
            yield part

    with PeakRss() as rss, httpx.Client(timeout=120) as c:
        r = c.post(
            stream_sidecar.url + "/_bulk", content=body(), headers={"content-type": "application/x-ndjson"}
        )
    assert r.status_code == 200
    assert r.json() == {"received": total}
    assert rss.growth_mb < 60, f"resident memory grew {rss.growth_mb:.0f} MB for a {total // MB} MB body"


def test_a_big_response_streams_back(stream_sidecar: RunningSidecar) -> None:
    received = 0
    with PeakRss() as rss, httpx.Client(timeout=120) as c:
        with c.stream("GET", stream_sidecar.url + "/big?mb=150") as r:
            assert r.status_code == 200
            for chunk in r.iter_raw():
                received += len(chunk)
    assert received == 150 * MB
    assert rss.growth_mb < 60, f"resident memory grew {rss.growth_mb:.0f} MB for a 150 MB response"


def test_credentials_pass_through_and_are_never_logged(
    stream_sidecar: RunningSidecar, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "Basic c2VjcmV0LXVzZXI6c2VjcmV0LXBhc3N3b3Jk"
    caplog.set_level("DEBUG")
    r = httpx.get(
        stream_sidecar.url + "/headers",
        headers={
            "Authorization": secret,
            "X-Forwarded-For": "10.1.2.3",
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "1",
            "X-Custom": "kept",
        },
    )
    received = dict(r.json())
    assert received["authorization"] == secret
    assert received["x-custom"] == "kept"
    assert received["x-forwarded-for"] == "10.1.2.3, 127.0.0.1"
    assert "x-hop" not in received and "connection" not in received
    assert received["host"] != stream_sidecar.url.removeprefix("http://"), "Host names the upstream"
    assert "c2VjcmV0" not in caplog.text
