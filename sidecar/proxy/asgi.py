"""Small ASGI helpers: read a body, send a whole response."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from sidecar.vocab import RawHeaders

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json; charset=UTF-8")]


class ClientDisconnected(Exception):
    """The client went away before its request body was read."""


class BodyTooLarge(Exception):
    """A buffered request body went past its limit; ``head`` holds what was read."""

    def __init__(self, head: bytes) -> None:
        super().__init__("request body too large")
        self.head = head


async def read_body(receive: Receive, limit: int) -> bytes:
    """Buffer the whole request body, up to ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    async for chunk in stream_body(receive):
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(b"".join(parts))
    return b"".join(parts)


async def stream_body(receive: Receive, head: bytes = b"") -> AsyncIterator[bytes]:
    """Yield the request body as it arrives, after ``head`` bytes already read."""
    if head:
        yield head
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def send_response(send: Send, status: int, headers: RawHeaders, body: bytes) -> None:
    """Send a complete response with its content-length."""
    out = [(k, v) for k, v in headers if k.lower() not in (b"content-length", b"transfer-encoding")]
    out.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body, "more_body": False})
