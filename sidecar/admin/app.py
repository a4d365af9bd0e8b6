"""Admin ASGI app: health, stats, metrics, events (and their live stream), the config, a rerank sandbox."""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import torch
import yaml
from prometheus_client import CONTENT_TYPE_LATEST

from sidecar import __version__
from sidecar.admin.preview import figures, proposed_route
from sidecar.config import Config, ConfigError, parse_config
from sidecar.engine.circuit import CircuitOpen
from sidecar.engine.protocol import ModelTimeout, Overloaded
from sidecar.events.metrics import summarize
from sidecar.proxy.asgi import JSON_HEADERS, BodyTooLarge, Receive, Scope, Send, read_body, send_response
from sidecar.proxy.errors import error_body
from sidecar.runtime import Runtime

_REDACTED = "<redacted>"
_MAX_BODY = 16 * 1024 * 1024


class AdminError(Exception):
    """A request the admin API answers with an OpenSearch-shaped error."""

    def __init__(self, status: int, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.kind, self.reason = status, kind, reason


class AdminApp:
    """Serves ``/_sidecar/*``; a bearer token is checked when one is configured."""

    def __init__(self, runtime: Runtime, token: str | None, *, config_path: Path | None = None) -> None:
        self.rt = runtime
        self.token = token.encode() if token else None
        self.config_path = config_path
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
        method, path = scope["method"], scope["path"].rstrip("/")
        if method == "GET" and path == "/_sidecar/events/stream":
            await self.stream(receive, send)
            return
        if method == "GET" and path == "/_sidecar/metrics":
            body = self.rt.metrics.exposition()
            await send_response(send, 200, [(b"content-type", CONTENT_TYPE_LATEST.encode())], body)
            return
        try:
            result = await self._route(method, path, scope, receive)
        except AdminError as e:
            await send_response(send, e.status, JSON_HEADERS, error_body(e.status, e.kind, e.reason))
            return
        await send_response(send, 200, JSON_HEADERS, json.dumps(result, ensure_ascii=False).encode())

    async def _route(self, method: str, path: str, scope: Scope, receive: Receive) -> Any:
        if method == "GET" and path == "/_sidecar/health":
            return self.health()
        if method == "GET" and path == "/_sidecar/config":
            return self.config_view(self.rt.config)
        if method == "PUT" and path == "/_sidecar/config":
            return await self.put_config(scope, await self._body(receive))
        if method == "POST" and path == "/_sidecar/rerank":
            return await self.sandbox(await self._body(receive))
        if method == "POST" and path == "/_sidecar/preview":
            return self.preview(await self._body(receive))
        if method == "GET" and path == "/_sidecar/stats":
            return summarize(list(self.rt.events.ring), self.rt.scorers)
        if method == "GET" and path == "/_sidecar/events":
            return {"events": self.events(scope)}
        if method == "GET" and path.startswith("/_sidecar/events/"):
            event = self.rt.events.get(path.rsplit("/", 1)[1])
            if event is None:
                raise AdminError(404, "resource_not_found_exception", f"no event {path.rsplit('/', 1)[1]!r}")
            return event.to_json()
        raise AdminError(404, "resource_not_found_exception", f"no handler for {method} {path}")

    def events(self, scope: Scope) -> list[dict[str, Any]]:
        """Recent events, newest first: ``limit``, ``before`` (epoch seconds), ``index``, ``status``."""
        params = dict(parse_qsl(scope["query_string"].decode("latin-1")))
        try:
            limit = int(params.get("limit", "50"))
            before = float(params["before"]) if "before" in params else None
        except ValueError:
            raise AdminError(
                400, "illegal_argument_exception", "limit must be an integer, before a number"
            ) from None
        if not 1 <= limit <= 10_000:
            raise AdminError(400, "illegal_argument_exception", "limit must be between 1 and 10000")
        found = self.rt.events.query(
            limit=limit, before=before, index=params.get("index"), status=params.get("status")
        )
        return [e.to_json() for e in found]

    async def stream(self, receive: Receive, send: Send) -> None:
        """Server-sent events: each new search event as it is recorded, a comment every 15 s."""
        feed = self.rt.events.subscribe()
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b": connected\n\n", "more_body": True})

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass  # the (empty) request body comes first

        gone = asyncio.ensure_future(disconnected())
        try:
            while not gone.done():
                nxt = asyncio.ensure_future(feed.get())
                done, _ = await asyncio.wait({nxt, gone}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
                if nxt in done:
                    event = nxt.result()
                    data = json.dumps(event.to_json(), ensure_ascii=False)
                    chunk = f"id: {event.id}\nevent: search\ndata: {data}\n\n".encode()
                else:
                    nxt.cancel()
                    chunk = b": keep-alive\n\n"
                if not gone.done():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            self.rt.events.unsubscribe(feed)
            gone.cancel()

    async def _body(self, receive: Receive) -> bytes:
        try:
            return await read_body(receive, _MAX_BODY)
        except BodyTooLarge:
            raise AdminError(413, "content_too_long_exception", f"body over {_MAX_BODY} bytes") from None

    def health(self) -> dict[str, object]:
        """Liveness and what is loaded."""
        cfg = self.rt.config
        return {
            "status": "degraded" if self.rt.events.write_error or self.rt.events.sink_error else "ok",
            "version": __version__,
            "uptime_s": round(time.time() - self.started, 1),
            "upstream": cfg.upstream.url,
            "models": {
                name: b.info() | {"circuit": self.rt.breaker(name).info()}
                for name, b in self.rt.scorers.items()
            },
            "routes": [{"indices": r.indices, "model": r.model, "window": r.window} for r in cfg.routes],
            "cuda": torch.cuda.is_available(),
            "events": {
                "sqlite": self.rt.config.events.sqlite,
                "in_memory": len(self.rt.events.ring),
                "written": self.rt.events.written,
                "error": self.rt.events.write_error,
                "index": self.rt.config.events.index,
                "sink_error": self.rt.events.sink_error,
            },
        }

    @staticmethod
    def config_view(config: Config) -> dict[str, Any]:
        """The running config as JSON, the admin token redacted."""
        data = config.model_dump(mode="json")
        if data["admin"].get("token"):
            data["admin"]["token"] = _REDACTED
        return data

    async def put_config(self, scope: Scope, raw: bytes) -> dict[str, Any]:
        """Validate, apply to the next search, persist with a backup; a bad one changes nothing."""
        ctype = next((v for k, v in scope["headers"] if k == b"content-type"), b"").decode("latin-1").lower()
        try:
            data = yaml.safe_load(raw) if "yaml" in ctype else json.loads(raw or b"null")
        except (ValueError, yaml.YAMLError) as e:
            raise AdminError(
                400,
                "parse_exception",
                f"the config body is not valid {'YAML' if 'yaml' in ctype else 'JSON'}: {e}",
            ) from None
        if (
            isinstance(data, dict)
            and isinstance(data.get("admin"), dict)
            and data["admin"].get("token") == _REDACTED
        ):
            data["admin"]["token"] = self.rt.config.admin.token
        try:
            new = parse_config(data)
            await self.rt.apply(new)
        except ConfigError as e:
            raise AdminError(400, "config_exception", str(e)) from None
        persisted = self._persist(new) if self.config_path is not None else None
        return {"acknowledged": True, "persisted": persisted, "config": self.config_view(new)}

    def _persist(self, config: Config) -> str:
        assert self.config_path is not None
        path = self.config_path
        if path.exists():
            backup = path.with_name(path.name + ".bak")
            backup.write_bytes(path.read_bytes())
        text = yaml.safe_dump(
            config.model_dump(mode="json", exclude_defaults=True), sort_keys=False, allow_unicode=True
        )
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
        return str(path)

    def preview(self, raw: bytes) -> dict[str, Any]:
        """Thresholds tried on the recorded searches of one route, beside the running ones."""
        req = _json_object(raw, "route and thresholds")
        routes = self.rt.config.routes
        index, changes, limit = req.get("route", 0), req.get("thresholds", {}), req.get("limit", 500)
        names = [r.name for r in routes]
        if isinstance(index, str) and index in names:
            index = names.index(index)
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(routes):
            raise AdminError(
                400,
                "illegal_argument_exception",
                f"route: an index below {len(routes)} or a route name ({', '.join(names)}) is required",
            )
        if not isinstance(changes, dict):
            raise AdminError(
                400, "illegal_argument_exception", "thresholds: an object of route keys is required"
            )
        if not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise AdminError(400, "illegal_argument_exception", "limit must be between 1 and 10000")
        try:
            proposed = proposed_route(routes[index], changes, f"routes.{index}")
        except ConfigError as e:
            raise AdminError(400, "config_exception", str(e)) from None
        # events name their route: searches made under an earlier order of the routes still count
        name = names[index]
        events = [e for e in self.rt.events.query(limit=limit) if e.route == name]
        return {
            "route": index,
            "name": name,
            "current": figures(routes[index], events),
            "proposed": figures(proposed, events),
        }

    async def sandbox(self, raw: bytes) -> dict[str, Any]:
        """Score documents for a query without touching the cluster."""
        req = _json_object(raw, "query and documents")
        query, docs = req.get("query"), req.get("documents")
        instruction, model = req.get("instruction"), req.get("model")
        if not isinstance(query, str) or not query.strip():
            raise AdminError(400, "illegal_argument_exception", "query: a non-empty string is required")
        if not isinstance(docs, list) or not all(isinstance(d, str) for d in docs):
            raise AdminError(400, "illegal_argument_exception", "documents: a list of strings is required")
        if instruction is not None and not isinstance(instruction, str):
            raise AdminError(400, "illegal_argument_exception", "instruction: a string is required")
        if model is None and self.rt.config.routes:
            model = self.rt.config.routes[0].model
        if model not in self.rt.scorers:
            known = ", ".join(sorted(self.rt.scorers)) or "none loaded"
            raise AdminError(
                400, "illegal_argument_exception", f"model: unknown model {model!r} (loaded: {known})"
            )
        started = time.perf_counter()
        try:
            scores = await self.rt.score(model, query, docs, 60.0, instruction)
        except (ModelTimeout, Overloaded, CircuitOpen) as e:
            raise AdminError(503, "unavailable_exception", str(e)) from None
        ranking = sorted(range(len(docs)), key=lambda i: (-scores[i], i))
        return {
            "model": model,
            "took_ms": round((time.perf_counter() - started) * 1000, 1),
            "scores": scores,
            "ranking": [{"index": i, "score": scores[i]} for i in ranking],
        }


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        req = json.loads(raw or b"null")
    except ValueError as e:
        raise AdminError(400, "parse_exception", f"the body is not valid JSON: {e}") from None
    if not isinstance(req, dict):
        raise AdminError(400, "illegal_argument_exception", f"expected a JSON object with {what}")
    return req
