"""The upstream pool against real sockets: keep-alive, framing, HEAD, faults, timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from sidecar.upstream import UpstreamError, UpstreamPool

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    chunked = False
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
        if line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower():
            chunked = True
    if chunked:
        body = b""
        while True:
            size = int((await reader.readline()).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
        return head, body
    return head, await reader.readexactly(length) if length else b""


class RawServer:
    """A loopback TCP server whose every connection runs ``handler``; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0

    async def __aenter__(self) -> str:
        async def on_connect(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(r, w)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                w.close()

        self.server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()


async def keepalive_echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    while True:
        head, body = await _read_request(r)
        method = head.split(b" ")[0]
        payload = b"%s %d" % (head.split(b"\r\n")[0], len(body))
        if b"/chunked" in head:
            w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-a: 1\r\n\r\n")
            for part in (b"hello ", b"chunked ", b"world"):
                w.write(b"%x\r\n%s\r\n" % (len(part), part))
            w.write(b"0\r\n\r\n")
        else:
            w.write(
                b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\ncontent-type: text/plain\r\n\r\n" % len(payload)
            )
            if method != b"HEAD":
                w.write(payload)
        await w.drain()


async def test_keepalive_reuses_one_connection() -> None:
    server = RawServer(keepalive_echo)
    async with server as url:
        pool = UpstreamPool(url)
        for i in range(5):
            resp = await pool.request("POST", b"/x?i=%d" % i, [(b"content-type", b"text/plain")], b"abc")
            assert resp.status == 200
            assert await resp.read() == b"POST /x?i=%d HTTP/1.1 3" % i
        assert server.connections == 1
        await pool.aclose()


async def test_chunked_response_and_streamed_request() -> None:
    async def body() -> AsyncIterator[bytes]:
        for part in (b"ab", b"cd", b"e"):
            yield part

    async with RawServer(keepalive_echo) as url:
        pool = UpstreamPool(url)
        resp = await pool.request("GET", b"/chunked", [], None)
        assert (b"x-a", b"1") in resp.headers
        assert await resp.read() == b"hello chunked world"
        resp = await pool.request("PUT", b"/up", [], body())
        assert await resp.read() == b"PUT /up HTTP/1.1 5"
        resp = await pool.request("PUT", b"/up", [], body(), content_length=5)
        assert await resp.read() == b"PUT /up HTTP/1.1 5"
        await pool.aclose()


async def test_head_has_no_body() -> None:
    async with RawServer(keepalive_echo) as url:
        pool = UpstreamPool(url)
        resp = await pool.request("HEAD", b"/kb", [], None)
        assert resp.status == 200 and (b"content-length", b"19") in resp.headers
        assert await resp.read() == b""
        resp = await pool.request("GET", b"/after-head", [], None)
        assert await resp.read() == b"GET /after-head HTTP/1.1 0"
        await pool.aclose()


async def test_connection_refused_is_a_connect_error() -> None:
    pool = UpstreamPool("http://127.0.0.1:9")
    with pytest.raises(UpstreamError) as e:
        await pool.request("GET", b"/", [], None)
    assert e.value.kind == "connect"


async def test_a_silent_upstream_times_out() -> None:
    async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await _read_request(r)
        await asyncio.sleep(5)

    async with RawServer(silent) as url:
        pool = UpstreamPool(url, read_timeout=0.2)
        with pytest.raises(UpstreamError) as e:
            await pool.request("GET", b"/", [], None)
        assert e.value.kind == "timeout"
        await pool.aclose()


async def test_a_cut_response_is_an_error_not_a_short_body() -> None:
    async def cut(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await _read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")
        await w.drain()

    async with RawServer(cut) as url:
        pool = UpstreamPool(url)
        resp = await pool.request("GET", b"/", [], None)
        with pytest.raises(UpstreamError):
            await resp.read()
        await pool.aclose()


async def test_a_stale_keepalive_connection_is_retried_only_for_a_bodiless_get() -> None:
    async def once(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await _read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await w.drain()
        await r.read(1)  # then the server drops the connection at the next request

    server = RawServer(once)
    async with server as url:
        pool = UpstreamPool(url)
        assert await (await pool.request("GET", b"/", [], None)).read() == b"ok"
        await asyncio.sleep(0)  # the connection is idle in the pool, and still open
        assert await (await pool.request("GET", b"/", [], None)).read() == b"ok"
        assert server.connections == 2
        await (await pool.request("GET", b"/", [], None)).read()
        with pytest.raises(UpstreamError):
            resp = await pool.request("POST", b"/", [], b"write")
            await resp.read()
        await pool.aclose()


async def test_pool_bounds_concurrent_connections() -> None:
    server = RawServer(keepalive_echo)
    async with server as url:
        pool = UpstreamPool(url, max_connections=2)

        async def one(i: int) -> bytes:
            resp = await pool.request("GET", b"/%d" % i, [], None)
            return await resp.read()

        results = await asyncio.gather(*(one(i) for i in range(10)))
        assert len(results) == 10
        assert server.connections <= 2
        await pool.aclose()
