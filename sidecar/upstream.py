"""A lean HTTP/1.1 keep-alive pool to the upstream cluster, on asyncio and httptools.

A pooled ``httpx.AsyncClient`` cost about 1.4 ms of CPU per pass-through request here
(its pool polls every idle connection's socket on each request, and each call walks
auth, redirect and cookie layers); this pool does the one thing a proxy needs and
costs a fraction of that. Both the pass-through and the interceptor use it: one pool
of upstream connections per process.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator
from typing import cast
from urllib.parse import urlsplit

import httptools

from sidecar.vocab import RawHeaders

_HIGH_WATER = 1 << 20  # pause reading the upstream past 1 MiB not yet sent on
_LOW_WATER = 1 << 18


class UpstreamError(Exception):
    """The upstream could not be reached, timed out, or broke the protocol."""

    def __init__(self, kind: str, message: str, sent: bool = True) -> None:
        super().__init__(message)
        self.kind = kind  # connect | timeout | protocol
        self.sent = sent  # False: no connection was made, so nothing of the request went out


class _Connection(asyncio.Protocol):
    """One upstream connection: writes requests, parses responses as they stream in."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._reset()

    def _reset(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done: asyncio.Future[None] = self.loop.create_future()
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.complete = False
        self.framed = False
        self.error: BaseException | None = None
        self._wake: asyncio.Future[None] | None = None
        self.head_request = False
        self.keep_alive = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass
        except httptools.HttpParserError as e:
            self._fail(UpstreamError("protocol", f"invalid HTTP from upstream: {e}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._can_write.set()
        if not self.complete:
            if self.headers_done.done() and not self.framed:
                self.complete = True  # a body delimited by the end of the connection
                self._notify()
            else:
                self._fail(UpstreamError("protocol", "upstream closed the connection mid-response"))

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        low = name.lower()
        if low in (b"content-length", b"transfer-encoding"):
            self.framed = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.parser.get_status_code() < 200:  # 1xx: wait for the final response
            self.headers = []
            return
        self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it once the message ends
        if not self.headers_done.done():
            self.headers_done.set_result(None)
        if self.head_request:
            self.complete = True
            self._notify()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
        self._notify()

    def on_message_complete(self) -> None:
        if self.headers_done.done():
            self.complete = True
            self._notify()

    # helpers
    def _notify(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        self.error = exc
        if not self.headers_done.done():
            self.headers_done.set_exception(exc)
            self.headers_done.exception()  # mark retrieved; the caller sees it via await
        self._notify()
        if self.transport is not None:
            self.transport.close()

    async def drain(self) -> None:
        await self._can_write.wait()
        if self.closed:
            raise UpstreamError("protocol", "upstream closed the connection while the request was sent")

    async def next_chunk(self, timeout: float) -> bytes | None:
        """The next body chunk, or None at the end of the body."""
        while True:
            if self.chunks:
                chunk = self.chunks.popleft()
                self.buffered -= len(chunk)
                if self.buffered < _LOW_WATER and self.transport is not None and not self.closed:
                    self.transport.resume_reading()
                return chunk
            if self.error is not None:
                raise self.error
            if self.complete:
                return None
            self._wake = self.loop.create_future()
            try:
                await asyncio.wait_for(self._wake, timeout)
            except asyncio.TimeoutError:
                raise UpstreamError("timeout", "upstream stopped sending the response body") from None
            finally:
                self._wake = None

    @property
    def reusable(self) -> bool:
        return self.complete and not self.closed and not self.head_request and self.keep_alive


class UpstreamResponse:
    """Status, raw headers and a body that streams from the pooled connection."""

    def __init__(
        self, pool: UpstreamPool, conn: _Connection, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        self._pool = pool
        self._conn: _Connection | None = conn
        self.status = status
        self.headers = headers

    async def iter_body(self) -> AsyncIterator[bytes]:
        """Yield the body as it arrives; the connection returns to the pool at the end."""
        conn = self._conn
        if conn is None:
            return
        while True:
            chunk = await conn.next_chunk(self._pool.read_timeout)
            if chunk is None:
                break
            yield chunk
        self.release()

    async def read(self) -> bytes:
        """The whole body."""
        return b"".join([c async for c in self.iter_body()])

    def release(self) -> None:
        """Give the connection back (or close it if the body was not read to the end)."""
        if self._conn is not None:
            self._pool._release(self._conn)
            self._conn = None


class UpstreamPool:
    """Keep-alive connections to one upstream origin, at most ``max_connections`` at once."""

    def __init__(
        self,
        url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_connections: int = 256,
        max_idle: int = 64,
    ) -> None:
        parts = urlsplit(url)
        self.scheme = parts.scheme
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/").encode()
        default_port = (parts.scheme == "https" and self.port == 443) or (
            parts.scheme == "http" and self.port == 80
        )
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = (host if default_port else f"{host}:{self.port}").encode()
        if parts.scheme == "https" and ssl_context is None:
            ssl_context = ssl.create_default_context()
        self.ssl_context = ssl_context if parts.scheme == "https" else None
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_idle = max_idle
        self._idle: collections.deque[_Connection] = collections.deque()
        self._slots = asyncio.Semaphore(max_connections)
        self._all: set[_Connection] = set()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(loop),
                    self.host,
                    self.port,
                    ssl=self.ssl_context,
                    server_hostname=self.host if self.ssl_context else None,
                ),
                self.connect_timeout,
            )
        except asyncio.TimeoutError:
            raise UpstreamError(
                "timeout", f"connecting to {self.host}:{self.port} timed out", sent=False
            ) from None
        except OSError as e:
            raise UpstreamError(
                "connect", f"cannot connect to {self.host}:{self.port}: {e.strerror or e}", sent=False
            ) from None
        self._all.add(conn)
        return conn

    def _checkout(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                conn._reset()
                return conn
            self._all.discard(conn)
        return None

    def _release(self, conn: _Connection) -> None:
        if conn.reusable and len(self._idle) < self.max_idle:
            self._idle.append(conn)
        else:
            self._all.discard(conn)
            if conn.transport is not None:
                conn.transport.close()
        self._slots.release()

    async def request(
        self,
        method: str,
        target: bytes,
        headers: RawHeaders,
        body: bytes | AsyncIterator[bytes] | None,
        *,
        content_length: int | None = None,
    ) -> UpstreamResponse:
        """Send one request (``target`` is the path and query as sent) and wait for the response head.

        A streamed body with ``content_length`` is sent as is, without one chunked.
        Nothing is retried: a request is written to the upstream at most once, except
        that a bodiless GET or HEAD that met a connection the upstream had just
        closed goes once more on a new connection.
        """
        await self._slots.acquire()
        try:
            conn = self._checkout()
            reused = conn is not None
            if conn is None:
                conn = await self._connect()
            try:
                return await self._exchange(conn, method, target, headers, body, content_length)
            except UpstreamError as e:
                retry = reused and body is None and method in ("GET", "HEAD") and e.kind == "protocol"
                if not retry:
                    raise
                conn = await self._connect()
                return await self._exchange(conn, method, target, headers, body, content_length)
        except BaseException:
            self._slots.release()
            raise

    async def _exchange(
        self,
        conn: _Connection,
        method: str,
        target: bytes,
        headers: RawHeaders,
        body: bytes | AsyncIterator[bytes] | None,
        content_length: int | None,
    ) -> UpstreamResponse:
        assert conn.transport is not None
        conn.head_request = method == "HEAD"
        lines = [
            method.encode(),
            b" ",
            self.prefix,
            target,
            b" HTTP/1.1\r\nhost: ",
            self.host_header,
            b"\r\n",
        ]
        for k, v in headers:
            lines += [k, b": ", v, b"\r\n"]
        chunked = False
        if isinstance(body, bytes):
            if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
                lines += [b"content-length: ", str(len(body)).encode(), b"\r\n"]
        elif body is not None:
            if content_length is not None:
                lines += [b"content-length: ", str(content_length).encode(), b"\r\n"]
            else:
                chunked = True
                lines.append(b"transfer-encoding: chunked\r\n")
        lines.append(b"\r\n")
        try:
            if isinstance(body, bytes):
                conn.transport.write(b"".join(lines) + body)
            else:
                conn.transport.write(b"".join(lines))
                if body is not None:
                    async for chunk in body:
                        if conn.closed:
                            break
                        if chunk:
                            conn.transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                            await conn.drain()
                    if chunked and not conn.closed:
                        conn.transport.write(b"0\r\n\r\n")
            await asyncio.wait_for(asyncio.shield(conn.headers_done), self.read_timeout)
        except asyncio.TimeoutError:
            conn.transport.close()
            self._all.discard(conn)
            raise UpstreamError("timeout", "upstream did not answer in time") from None
        except BaseException:
            conn.transport.close()
            self._all.discard(conn)
            raise
        return UpstreamResponse(self, conn, conn.parser.get_status_code(), conn.headers)

    async def aclose(self) -> None:
        """Close every connection."""
        for conn in list(self._all):
            if conn.transport is not None:
                conn.transport.close()
        self._all.clear()
        self._idle.clear()
