"""Pass-through: method, path, query, headers and a streamed body, both ways."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from sidecar import tracing
from sidecar.proxy.asgi import (
    JSON_HEADERS,
    BodyTooLarge,
    Receive,
    Scope,
    Send,
    read_body,
    send_response,
    stream_body,
)
from sidecar.proxy.errors import error_body
from sidecar.runtime import Runtime
from sidecar.upstream import UpstreamError, UpstreamResponse
from sidecar.vocab import RawHeaders

log = logging.getLogger(__name__)

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"expect",
        b"content-length",  # the pool writes the framing of what it sends
    }
)
_RESPONSE_HOP_BY_HOP = HOP_BY_HOP - {b"content-length"}
_SMALL_BODY = 64 * 1024


def request_headers(scope: Scope, drop: frozenset[bytes] = frozenset()) -> list[tuple[bytes, bytes]]:
    """The client's headers for the upstream: hop-by-hop ones (and ``drop``) removed."""
    raw: list[tuple[bytes, bytes]] = scope["headers"]
    named: set[bytes] = set()
    forwarded_for: list[bytes] = []
    for k, v in raw:
        if k == b"connection":
            named.update(x.strip().lower() for x in v.split(b","))
        elif k == b"x-forwarded-for":
            forwarded_for.append(v)
    skip = HOP_BY_HOP | named | drop | {b"x-forwarded-for"}
    out = [(k, v) for k, v in raw if k not in skip]
    client = scope.get("client")
    if client:
        forwarded_for.append(client[0].encode())
    if forwarded_for:
        out.append((b"x-forwarded-for", b", ".join(forwarded_for)))
    return out


def response_headers(
    resp: UpstreamResponse, drop: frozenset[bytes] = frozenset()
) -> list[tuple[bytes, bytes]]:
    """The upstream's response headers minus hop-by-hop ones."""
    return [
        (k, v) for k, v in resp.headers if k.lower() not in _RESPONSE_HOP_BY_HOP and k.lower() not in drop
    ]


def target(scope: Scope, query_string: bytes | None = None) -> bytes:
    """The request target for the upstream: the client's path as sent, and a query string."""
    path: bytes = scope.get("raw_path") or scope["path"].encode()
    qs = scope["query_string"] if query_string is None else query_string
    return path + b"?" + qs if qs else path


# methods whose request may change the cluster: a gateway that lost the answer cannot say
# whether it was applied
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


async def send_upstream_error(send: Send, exc: UpstreamError, method: str = "GET") -> None:
    """502 (or 504 on a timeout) in OpenSearch's error shape. For a write, ``applied`` says
    what the sidecar knows of it: false when no connection was made (nothing was sent),
    ``"unknown"`` when the request went out and its answer was lost (retry only what is
    idempotent: an index with an id, not a POST that makes one)."""
    if exc.kind == "timeout":
        status, kind, reason = 504, "timeout_exception", f"upstream timeout: {exc}"
    else:
        status, kind, reason = 502, "upstream_unavailable_exception", f"upstream unavailable: {exc}"
    log.warning("%s", reason)
    extra: dict[str, object] = {}
    if method.upper() not in _READS:
        extra["applied"] = False if not exc.sent else "unknown"
    await send_response(send, status, JSON_HEADERS, error_body(status, kind, reason, **extra))


async def send_too_large(send: Send, size: int | None, limit: int, reason: str | None = None) -> None:
    """413 in OpenSearch's error shape; the connection is closed (the body was not read)."""
    got = f"of {size} bytes " if size is not None else ""
    reason = reason or f"request body {got}is over the limit of {limit} bytes (max_request_body_bytes)"
    headers = [*JSON_HEADERS, (b"connection", b"close")]
    await send_response(send, 413, headers, error_body(413, "content_too_long_exception", reason))


async def _limited(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """The body as it streams, failing once it passes ``limit`` bytes."""
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(b"")
        yield chunk


def _content_length(scope: Scope) -> tuple[bool, int | None]:
    """Whether the request has a body, and its declared length."""
    for k, v in scope["headers"]:
        if k == b"content-length":
            try:
                n = int(v)
            except ValueError:
                return True, None
            return n > 0, n
        if k == b"transfer-encoding":
            return True, None
    return False, None


async def forward(
    rt: Runtime,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    body: bytes | None = None,
    head: bytes = b"",
    extra_headers: RawHeaders = (),
    limit: int | None = None,
) -> None:
    """Forward the request unchanged and stream the response back.

    ``body`` is the whole request body when the caller already buffered it;
    ``head`` is its first part when the caller stopped reading early (the rest
    still comes from ``receive``); ``limit``: the body's bound (the snapshot's, for a search;
    the running config's otherwise).
    """
    content: bytes | AsyncIterator[bytes] | None
    has_body, length = _content_length(scope)
    limit = rt.config.max_request_body_bytes if limit is None else limit
    if (length or 0) > limit or (body is not None and len(body) > limit):
        await send_too_large(send, length if body is None else len(body), limit)
        return
    if body is not None:
        content = body
    elif not head and length is not None and 0 < length <= _SMALL_BODY:
        content = await read_body(receive, length)  # one write upstream instead of a streamed few
    elif has_body or head:
        content = _limited(stream_body(receive, head), limit)
    else:
        content = None
    with tracing.cluster_call(scope):  # a span only where the request is traced
        try:
            resp = await rt.services.upstream.request(
                scope["method"],
                target(scope),
                tracing.injected(request_headers(scope)),
                content,
                content_length=length,
            )
        except UpstreamError as e:
            await send_upstream_error(send, e, scope["method"])
            return
        except BodyTooLarge:  # a chunked body ran past the limit: the cluster got an unfinished request
            await send_too_large(send, None, limit)
            return
        if tracing.on():
            tracing.annotate({"http.response.status_code": resp.status}, error=resp.status >= 500)
        try:
            headers = response_headers(resp)
            headers.extend(extra_headers)
            await send({"type": "http.response.start", "status": resp.status, "headers": headers})
            async for chunk in resp.iter_body():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            resp.release()
