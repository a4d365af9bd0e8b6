"""The listeners' HTTP/1.1 protocol: uvicorn's httptools protocol with every size and wait bounded.

A client of the proxy port is anyone's: a request line and headers past ``max_header_bytes``
get 431 (as OpenSearch's ``http.max_header_size``), headers that do not arrive within
``header_timeout_s`` and a body that pauses longer than ``body_timeout_s`` get 408 (nginx's
``client_header_timeout`` and ``client_body_timeout``), a connection past ``max_connections``
gets 503 and is closed at once, and a malformed request gets 400. Every one of these answers is
in OpenSearch's error shape and closes the connection.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sidecar.config import LimitsConfig
from sidecar.proxy.errors import error_body

log = logging.getLogger(__name__)

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
_REASONS[503] = b"Service Unavailable"


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing; ``data_received`` answers with it."""


def raise_open_files_limit(wanted: int) -> int:
    """Raise the soft limit of open files to the hard one (as nginx's worker_rlimit_nofile would
    be set): a listener that runs out of descriptors fails every request, not only the excess.
    Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted * 2)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:
            log.warning("cannot raise the open files limit from %d to %d: %s", soft, target, e)
    return soft


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol under ``limits`` (a subclass per listener sets them)."""

    limits: ClassVar[LimitsConfig] = LimitsConfig()
    max_connections: ClassVar[int] = LimitsConfig().max_connections

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._refusal: tuple[int, str, str] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reading_body = False

    @classmethod
    def under(cls, limits: LimitsConfig, max_connections: int) -> type[LimitedHttpProtocol]:
        """The protocol class of a listener with these limits."""
        return type("ListenerProtocol", (cls,), {"limits": limits, "max_connections": max_connections})

    # connections

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            log.warning("more than %d connections open: one refused with 503", self.max_connections)
            self._answer(503, "too_many_connections_exception", "the sidecar has too many open connections")
            return
        self._arm(self.limits.header_timeout_s, "header")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_body:
            self._arm(self.limits.body_timeout_s, "body")
        super().data_received(data)

    # the parser's callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        if self._timer is None:
            self._arm(self.limits.header_timeout_s, "header")

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        if not self.parser.should_upgrade() and any(
            k in (b"content-length", b"transfer-encoding") for k, _ in self.headers
        ):
            self._reading_body = True
            self._arm(self.limits.body_timeout_s, "body")

    def on_message_complete(self) -> None:
        self._reading_body = False
        self._disarm()
        super().on_message_complete()

    def _count(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > self.limits.max_header_bytes:
            self._refusal = (
                431,
                "too_long_http_header_exception",
                f"the request line and headers are over {self.limits.max_header_bytes} bytes"
                " (limits.max_header_bytes)",
            )
            raise _Refused()

    # answers

    def send_400_response(self, msg: str) -> None:
        """Called by the base class for any parser error, ours (``_Refused``) included."""
        if self._refusal is not None:
            self._answer(*self._refusal)
        else:
            self._answer(400, "http_parse_exception", f"invalid HTTP request: {msg}")

    def _answer(self, status: int, kind: str, reason: str) -> None:
        """Write an error in OpenSearch's shape straight to the connection and close it."""
        self._disarm()
        if self.transport.is_closing():
            return
        body = error_body(status, kind, reason)
        head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json; charset=UTF-8\r\n" % (
            status,
            _REASONS.get(status, b"Error"),
        )
        head += b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        if self.cycle is not None and not self.cycle.response_complete:
            if self.cycle.response_started:
                self.transport.close()  # a response is under way: nothing else can be said
                return
            self.cycle.response_complete = True  # the app's own answer, if any, goes nowhere
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.write(head + body)
        self.transport.close()

    # timers

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._timed_out, what)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self, what: str) -> None:
        self._timer = None
        if what == "body" and self.flow.read_paused:  # the app is not reading: not the client's wait
            self._arm(self.limits.body_timeout_s, what)
            return
        if what == "header" and not self._head_bytes and (self.cycle is None or self.cycle.response_complete):
            self.transport.close()  # an idle connection that never began a request: no answer owed
            return
        limit = "header_timeout_s" if what == "header" else "body_timeout_s"
        seconds = getattr(self.limits, limit)
        self._answer(
            408,
            "request_timeout_exception",
            f"the request's {what} did not arrive within {seconds:g} s (limits.{limit})",
        )
