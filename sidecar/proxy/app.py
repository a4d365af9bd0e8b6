"""The proxy's ASGI app: searches are intercepted, everything else passes through."""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote

from sidecar.proxy.asgi import JSON_HEADERS, ClientDisconnected, Receive, Scope, Send, send_response
from sidecar.proxy.errors import error_body
from sidecar.proxy.forward import forward
from sidecar.proxy.intercept import handle_msearch, handle_search
from sidecar.runtime import Runtime

log = logging.getLogger(__name__)

# /_search, /{index}/_search, /_msearch, /{index}/_msearch (a trailing slash is allowed).
_SEARCH_PATH = re.compile(r"^/(?:(?P<index>[^/]+)/)?(?P<op>_search|_msearch)/?$")


class ProxyApp:
    """Pure ASGI: one shared upstream client, no framework on the hot path."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            await self._dispatch(scope, receive, send)
        except ClientDisconnected:
            log.debug("client disconnected")
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
        if method in ("GET", "POST") and ("_search" in scope["path"] or "_msearch" in scope["path"]):
            m = _SEARCH_PATH.match(scope["path"])
            if m:
                index = m.group("index")
                index = unquote(index) if index is not None else None
                if index is not None and index.startswith("_") and index != "_all":
                    await forward(self.rt, scope, receive, send)
                elif m.group("op") == "_search":
                    await handle_search(self.rt, scope, receive, send, index)
                else:
                    await handle_msearch(self.rt, scope, receive, send, index)
                return
        await forward(self.rt, scope, receive, send)
