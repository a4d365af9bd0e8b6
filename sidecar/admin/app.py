"""Admin ASGI app: ``/_sidecar/health`` now; stats, events and config come next."""

from __future__ import annotations

import hmac
import json
import time

import torch

from sidecar import __version__
from sidecar.engine.batcher import model_info
from sidecar.proxy.asgi import JSON_HEADERS, Receive, Scope, Send, send_response
from sidecar.proxy.errors import error_body
from sidecar.runtime import Runtime


class AdminApp:
    """Serves ``/_sidecar/*``; a bearer token is checked when one is configured."""

    def __init__(self, runtime: Runtime, token: str | None) -> None:
        self.rt = runtime
        self.token = token.encode() if token else None
        self.started = time.time()

    def _authorized(self, scope: Scope) -> bool:
        if self.token is None:
            return True
        for k, v in scope["headers"]:
            if k == b"authorization":
                scheme, _, value = v.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), self.token)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if not self._authorized(scope):
            body = error_body(401, "security_exception", "missing or wrong admin bearer token")
            await send_response(send, 401, [*JSON_HEADERS, (b"www-authenticate", b"Bearer")], body)
            return
        path = scope["path"].rstrip("/")
        if scope["method"] == "GET" and path == "/_sidecar/health":
            await send_response(send, 200, JSON_HEADERS, json.dumps(self.health()).encode())
            return
        body = error_body(404, "resource_not_found_exception", f"no handler for {scope['method']} {path}")
        await send_response(send, 404, JSON_HEADERS, body)

    def health(self) -> dict[str, object]:
        """Liveness and what is loaded."""
        cfg = self.rt.config
        return {
            "status": "ok",
            "version": __version__,
            "uptime_s": round(time.time() - self.started, 1),
            "upstream": cfg.upstream.url,
            "models": {name: model_info(b) for name, b in self.rt.batchers.items()},
            "routes": [{"indices": r.indices, "model": r.model, "window": r.window} for r in cfg.routes],
            "cuda": torch.cuda.is_available(),
        }
