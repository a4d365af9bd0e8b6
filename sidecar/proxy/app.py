"""The proxy's ASGI app: searches are intercepted, everything else passes through."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from urllib.parse import unquote

from sidecar import tracing
from sidecar.events.ubi import TEE_LIMIT, clicks, documents, stored_items, write_kind
from sidecar.proxy.asgi import (
    JSON_HEADERS,
    BodyTooLarge,
    ClientDisconnected,
    Message,
    Receive,
    Scope,
    Send,
    send_response,
)
from sidecar.proxy.errors import error_body
from sidecar.proxy.forward import forward, send_too_large
from sidecar.proxy.intercept import handle
from sidecar.proxy.owned import GuardedReceive, OwnedIndexRefused, owned_indices
from sidecar.proxy.request import WBITS, InflatedTooLarge, header, header_map, inflate
from sidecar.runtime import Runtime

log = logging.getLogger(__name__)

# /_search, /{index}/_search, /_msearch, /{index}/_msearch (a trailing slash is allowed).
_SEARCH_PATH = re.compile(r"^/(?:(?P<index>[^/]+)/)?(?P<op>_search|_msearch)/?$")


class ProxyApp:
    """Pure ASGI: one shared upstream client, no framework on the hot path."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        cfg = runtime.config
        self.owned = owned_indices(cfg.config_store.index if cfg.config_store else None, cfg.events.index)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if tracing.on() and tracing.sampled(scope["headers"]):
            await self._traced(scope, receive, send)
        else:
            await self._served(scope, receive, send)

    async def _traced(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A sampled request under its span, with the status it was answered with."""
        path, method = scope["path"], scope["method"]
        name = "msearch" if "_msearch" in path else "search" if "_search" in path else method
        status = 0

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        attributes = {"http.request.method": method, "url.path": path[:200]}
        with tracing.server(name, scope["headers"], attributes):
            await self._served(scope, receive, watched)
            tracing.annotate({"http.response.status_code": status}, error=status >= 500)

    async def _served(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._dispatch(scope, receive, send)
        except ClientDisconnected:
            log.debug("client disconnected")
        except OwnedIndexRefused as e:
            log.warning("refused on the proxy listener: %s %s: %s", scope["method"], scope["path"][:200], e)
            await _answer_if_unstarted(send, e.status, error_body(e.status, e.kind, str(e)))
        except BodyTooLarge:
            with contextlib.suppress(Exception):
                await send_too_large(send, None, self.rt.config.max_request_body_bytes)
        except Exception:
            # A bug of ours: log it (never the headers) and answer like a gateway, not with a 500.
            log.exception("internal error on %s %s", scope["method"], scope["path"])
            body = error_body(
                502, "sidecar_exception", "the rerank sidecar failed on this request; see its log"
            )
            try:
                await send_response(send, 502, JSON_HEADERS, body)
            except Exception:
                log.debug("the response had already started; closing the connection")

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if _admin_path(scope):
            reason = "the admin API is not served on the proxy listener"
            await send_response(
                send, 400, JSON_HEADERS, error_body(400, "illegal_argument_exception", reason)
            )
            return
        if _upgrade(scope):
            reason = "protocol upgrades (WebSocket, h2c) are not served: send plain HTTP/1.1 requests"
            headers = [*JSON_HEADERS, (b"connection", b"close")]
            await send_response(send, 400, headers, error_body(400, "illegal_argument_exception", reason))
            return
        if self.owned:
            self.owned.check_target(scope)
            encoding = header(scope, b"content-encoding").strip().lower()
            receive = GuardedReceive(
                receive, self.owned, scope, encoding, self.rt.config.max_request_body_bytes
            )
        if method in ("GET", "POST") and ("_search" in scope["path"] or "_msearch" in scope["path"]):
            m = _SEARCH_PATH.match(scope["path"])
            if m:
                index = m.group("index")
                index = unquote(index) if index is not None else None
                if index is not None and index.startswith("_") and index != "_all":
                    await forward(self.rt, scope, receive, send)
                    return
                multi = m.group("op") == "_msearch"
                await _unless_client_leaves(receive, lambda r: handle(self.rt, scope, r, send, index, multi))
                return
        kind = write_kind(method, scope["path"], self.rt.config.ubi.events_index)
        if kind is not None:
            await self._ubi_write(kind, scope, receive, send)
            return
        await forward(self.rt, scope, receive, send)

    async def _ubi_write(self, kind: str, scope: Scope, receive: Receive, send: Send) -> None:
        """A write that may carry UBI events goes through as any other; once the cluster took
        it (2xx), a copy of its body is read for clicks."""
        tee = _Tee(receive)
        status = 0
        answer: list[bytes] = []
        answered = 0
        encoding = b""

        async def watched(message: Message) -> None:
            nonlocal status, answered, encoding
            if message["type"] == "http.response.start":
                status = message["status"]
                encoding = next((v for k, v in message["headers"] if k.lower() == b"content-encoding"), b"")
            elif message["type"] == "http.response.body" and kind == "bulk" and answered <= TEE_LIMIT:
                chunk = message.get("body", b"")
                answered += len(chunk)
                answer.append(chunk)
            await send(message)

        ubi = self.rt.config.ubi  # the settings the write came under, whatever a reload does meanwhile
        await forward(self.rt, scope, tee, watched)
        if 200 <= status < 300 and tee.whole:
            stored = None
            if kind == "bulk":  # only the items the cluster stored: a refused one is no event
                raw = b"".join(answer)
                name = encoding.strip().lower().decode("latin-1")
                if name in WBITS:  # the cluster's compressed answer, inflated up to TEE_LIMIT
                    try:
                        raw = inflate(raw, name, TEE_LIMIT) or b""
                    except InflatedTooLarge:
                        raw = b""
                stored = stored_items(raw) if answered <= TEE_LIMIT else None
                if stored is None:
                    return
            docs = documents(kind, b"".join(tee.parts), scope["path"], ubi.events_index, stored)
            found = clicks(docs, ubi.click_actions)
            if found:
                self.rt.feedback(found, header_map(scope))


class _Tee:
    """``receive`` for a pass-through, keeping a copy of the body up to TEE_LIMIT bytes."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.parts: list[bytes] = []
        self.size = 0
        self.whole = True  # False once the body ran past the limit (the copy is dropped)

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request" and self.whole:
            chunk = message.get("body", b"")
            self.size += len(chunk)
            if self.size > TEE_LIMIT:
                self.whole, self.parts = False, []
            elif chunk:
                self.parts.append(chunk)
        return message


async def _answer_if_unstarted(send: Send, status: int, body: bytes) -> None:
    """An error answer, unless a response is already under way (then the connection ends)."""
    try:
        await send_response(send, status, [*JSON_HEADERS, (b"connection", b"close")], body)
    except Exception:
        log.debug("the response had already started; closing the connection")


def _upgrade(scope: Scope) -> bool:
    """Whether the request asks to switch protocols (``Connection: upgrade`` with ``Upgrade``)."""
    connection = header(scope, b"connection").lower()
    return "upgrade" in connection and bool(header(scope, b"upgrade"))


def _admin_path(scope: Scope) -> bool:
    """Whether the path names /_sidecar in any spelling: percent-encoded (even twice), with
    repeated slashes, dot segments or backslashes."""
    path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
    for _ in range(4):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    parts: list[str] = []
    for part in path.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return bool(parts) and parts[0].strip().lower() == "_sidecar"


class _BodyWatch:
    """``receive`` for a handler, noting when the request body has been read in full."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.body_read = asyncio.Event()

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.body_read.set()
        return message

    async def disconnected(self) -> None:
        """Return once the client has gone (only listens after the body was read)."""
        await self.body_read.wait()
        while (await self._receive())["type"] != "http.disconnect":
            pass


async def _unless_client_leaves(receive: Receive, handler: Callable[[Receive], Awaitable[None]]) -> None:
    """Run a search handler; a client that disconnects meanwhile cancels it, so its queued model
    work leaves the batcher instead of running for nobody."""
    watch = _BodyWatch(receive)
    work = asyncio.ensure_future(handler(watch))
    gone = asyncio.ensure_future(watch.disconnected())
    try:
        await asyncio.wait([work, gone], return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        work.cancel()
        raise
    finally:
        gone.cancel()
    if not work.done():
        work.cancel()
        log.debug("client disconnected during a search: its work was cancelled")
        raise ClientDisconnected()
    work.result()
