"""Admin API: health, stats, metrics, events (and their live stream), the config, a rerank sandbox.

Starlette's router and sse-starlette's event stream; every error, 404 and 405 included, in
OpenSearch's error shape."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from prometheus_client import CONTENT_TYPE_LATEST
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sidecar import __version__
from sidecar.admin.preview import figures, proposed_route
from sidecar.config import Config, ConfigError, parse_config
from sidecar.engine.circuit import CircuitOpen
from sidecar.engine.protocol import ModelTimeout, Overloaded, ScoreRequest
from sidecar.events.event import SearchEvent
from sidecar.events.metrics import summarize
from sidecar.events.ubi import clicks
from sidecar.experiments.tracker import Tracker
from sidecar.fleet.config_store import StoreConflict, StoreUnavailable
from sidecar.fleet.history import FleetHistory, HistoryError
from sidecar.jsontext import json_bytes, json_text
from sidecar.masking import mask_url, mask_urls
from sidecar.proxy.asgi import JSON_HEADERS, Receive, Scope, Send, send_response
from sidecar.proxy.errors import error_body
from sidecar.runtime import Runtime
from sidecar.upstream import UpstreamError

_REDACTED = "<redacted>"
_MAX_BODY = 16 * 1024 * 1024
KEEP_ALIVE_S = 15  # a comment on the event stream this often, so idle proxies keep it open


class AdminError(Exception):
    """A request the admin API answers with an OpenSearch-shaped error."""

    def __init__(self, status: int, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.kind, self.reason = status, kind, reason


def _error(status: int, kind: str, reason: str, headers: Mapping[str, str] | None = None) -> Response:
    body = error_body(status, kind, reason)
    return Response(body, status, headers=headers, media_type="application/json; charset=UTF-8")


def _answers_json(handler: Callable[[Request], Awaitable[Any]]) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint that answers what ``handler`` returns as JSON."""

    async def endpoint(request: Request) -> Response:
        body = json_bytes(await handler(request))
        return Response(body, media_type="application/json; charset=UTF-8")

    return endpoint


log = logging.getLogger(__name__)

# Kubernetes' probes: answered without the token, and saying nothing of the sidecar but whether
_PROBES = frozenset({"/_sidecar/live", "/_sidecar/ready"})


class AdminApp:
    """Serves ``/_sidecar/*``; a bearer token is checked when one is configured."""

    def __init__(self, runtime: Runtime, token: str | None, *, config_path: Path | None = None) -> None:
        self.rt = runtime
        self.token = token.encode() if token else None
        self.config_path = config_path
        self.started = time.time()
        self.closing = asyncio.Event()  # set when the sidecar stops: live streams end
        self.app = Starlette(
            routes=[
                Route("/_sidecar/health", _answers_json(self.health), methods=["GET"]),
                Route("/_sidecar/live", self.live, methods=["GET", "HEAD"]),
                Route("/_sidecar/ready", self.ready, methods=["GET", "HEAD"]),
                Route("/_sidecar/stats", _answers_json(self.stats), methods=["GET"]),
                Route("/_sidecar/metrics", self.metrics, methods=["GET"]),
                Route("/_sidecar/config", _answers_json(self.config), methods=["GET", "PUT"]),
                Route("/_sidecar/rerank", _answers_json(self.sandbox), methods=["POST"]),
                Route("/_sidecar/preview", _answers_json(self.preview), methods=["POST"]),
                Route("/_sidecar/events", _answers_json(self.events), methods=["GET"]),
                Route("/_sidecar/events/stream", self.stream, methods=["GET"]),
                Route("/_sidecar/events/{id}", _answers_json(self.event), methods=["GET"]),
                Route("/_sidecar/experiments", _answers_json(self.experiments), methods=["GET"]),
                Route("/_sidecar/experiments/{name}", _answers_json(self.experiment), methods=["GET"]),
                Route("/_sidecar/feedback", _answers_json(self.feedback), methods=["POST"]),
            ],
            exception_handlers={AdminError: self._admin_error, HTTPException: self._http_error},
        )

    def close(self) -> None:
        """End the live streams, so that stopping does not wait for their clients."""
        self.closing.set()

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
        if scope["path"] not in _PROBES and not self._authorized(scope):
            body = error_body(401, "security_exception", "missing or wrong admin bearer token")
            await send_response(send, 401, [*JSON_HEADERS, (b"www-authenticate", b"Bearer")], body)
            return
        if len(scope["path"]) > 1 and scope["path"].endswith("/"):  # /_sidecar/health/ is /_sidecar/health
            scope = {**scope, "path": scope["path"].rstrip("/")}
        await self.app(scope, receive, send)

    @staticmethod
    async def _admin_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AdminError)
        return _error(exc.status, exc.kind, exc.reason)

    @staticmethod
    async def _http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        where = f"{request.method} {request.url.path}"
        if exc.status_code == 405:
            allowed = exc.headers.get("Allow", "") if exc.headers else ""
            reason = f"Incorrect HTTP method for uri [{request.url.path}] and method [{request.method}]"
            return _error(405, "method_not_allowed_exception", f"{reason}, allowed: [{allowed}]", exc.headers)
        if exc.status_code == 404:
            return _error(404, "resource_not_found_exception", f"no handler for {where}")
        return _error(exc.status_code, "illegal_argument_exception", str(exc.detail))

    def _history(self, scope: Any) -> FleetHistory | None:
        """None for this sidecar's own figures; the fleet's events index for ``scope=fleet``."""
        if scope in (None, "local"):
            return None
        if scope != "fleet":
            raise AdminError(400, "illegal_argument_exception", f"scope: local or fleet, got {scope!r}")
        if self.rt.services.history is None:
            raise AdminError(
                400,
                "illegal_argument_exception",
                "scope=fleet reads the events index every sidecar writes: set events.index",
            )
        return self.rt.services.history

    async def _fleet_events(self, history: FleetHistory, **kwargs: Any) -> list[SearchEvent]:
        try:
            return await history.events(**kwargs)
        except HistoryError as e:
            raise AdminError(502, "fleet_history_exception", str(e)) from None

    async def stats(self, request: Request) -> dict[str, Any]:
        """The last minute's figures (and the fleet config's version this sidecar runs); with
        ``scope=fleet``, over every sidecar's events (the events index)."""
        history = self._history(request.query_params.get("scope"))
        if history is not None:
            events = await self._fleet_events(history, since=time.time() - 60)
            return summarize(events, {}) | {"scope": "fleet"}
        out = summarize(list(self.rt.services.events.ring), self.rt.scorers)
        if self.rt.warmup:
            out["warmup"] = self.rt.warmup
        store = self.rt.services.store
        if store is not None:
            out["config_version"] = store.seen.number if store.seen else None
            out["config_error"] = store.error
        return out

    async def metrics(self, request: Request) -> Response:
        """The Prometheus text format."""
        return Response(self.rt.services.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def config(self, request: Request) -> dict[str, Any]:
        """GET: the running config; PUT: replace it."""
        if request.method != "PUT":
            return self.config_view(self.rt.config)
        ctype = request.headers.get("content-type", "").lower()
        return await self.put_config(ctype, await self._body(request))

    async def event(self, request: Request) -> dict[str, Any]:
        """One event by id."""
        event_id = request.path_params["id"]
        event = self.rt.services.events.get(event_id)
        if event is None:
            raise AdminError(404, "resource_not_found_exception", f"no event {event_id!r}")
        return event.to_json()

    async def events(self, request: Request) -> dict[str, Any]:
        """Recent events, newest first: ``limit``, ``before`` (epoch seconds), ``index``, ``status``."""
        params = request.query_params
        try:
            limit = int(params.get("limit", "50"))
            before = float(params["before"]) if "before" in params else None
        except ValueError:
            raise AdminError(
                400, "illegal_argument_exception", "limit must be an integer, before a number"
            ) from None
        if not 1 <= limit <= 10_000:
            raise AdminError(400, "illegal_argument_exception", "limit must be between 1 and 10000")
        found = self.rt.services.events.query(
            limit=limit, before=before, index=params.get("index"), status=params.get("status")
        )
        return {"events": [e.to_json() for e in found]}

    async def _tracker(self, request: Request) -> Tracker:
        """This sidecar's experiments, or (``scope=fleet``) the fleet's: every sidecar's searches
        from the events index and the apps' clicks from the UBI events index, replayed."""
        history = self._history(request.query_params.get("scope"))
        if history is None:
            return self.rt.services.tracker
        ubi, mine = self.rt.config.ubi, self.rt.services.tracker
        fleet = Tracker(ubi.max_pending, mine.key if mine.verifies else None, ubi.click_window_s)
        fleet.configure([(name, e.route, e.config) for name, e in mine.experiments.items()])
        events = await self._fleet_events(history, experiment=True)
        try:
            found = await history.clicks(
                ubi.events_index, [e.query_id for e in events if e.query_id], ubi.click_actions
            )
        except HistoryError as e:
            raise AdminError(502, "fleet_history_exception", str(e)) from None
        fleet.replay(list(reversed(events)), found)
        return fleet

    async def experiments(self, request: Request) -> dict[str, Any]:
        """Every experiment's figures (``scope=fleet``: over every sidecar's searches)."""
        tracker = await self._tracker(request)
        return {
            "experiments": tracker.summaries(),
            "unmatched_clicks": tracker.unmatched,
            "rejected_clicks": tracker.rejected,
        }

    async def experiment(self, request: Request) -> dict[str, Any]:
        """One experiment's figures and its latest searches (served lists, credit, clicks)."""
        name = request.path_params["name"]
        found = (await self._tracker(request)).detail(name)
        if found is None:
            raise AdminError(404, "resource_not_found_exception", f"no experiment {name!r}")
        return found

    async def feedback(self, request: Request) -> dict[str, Any]:
        """UBI events from a server-side integration: one event, a list, or ``{"events": [...]}``."""
        try:
            req = json.loads(await self._body(request) or b"null")
        except ValueError as e:
            raise AdminError(400, "parse_exception", f"the body is not valid JSON: {e}") from None
        docs = req.get("events") if isinstance(req, dict) and "events" in req else req
        docs = [docs] if isinstance(docs, dict) else docs
        if not isinstance(docs, list):
            raise AdminError(
                400,
                "illegal_argument_exception",
                'expected a UBI event, a list of them, or {"events": [...]}',
            )
        found = clicks(docs, self.rt.config.ubi.click_actions)
        return {"received": len(docs), "clicks": len(found), "counted": self.rt.feedback(found)}

    async def stream(self, request: Request) -> Response:
        """Server-sent events: each new search event as it is recorded, a comment every 15 s."""
        feed = self.rt.services.events.subscribe()

        async def events() -> AsyncIterator[ServerSentEvent]:
            closing = asyncio.ensure_future(self.closing.wait())
            try:
                yield ServerSentEvent(comment="connected")
                while True:
                    nxt = asyncio.ensure_future(feed.get())
                    await asyncio.wait({nxt, closing}, return_when=asyncio.FIRST_COMPLETED)
                    if not nxt.done():  # the sidecar is stopping: end the stream, do not hold it up
                        nxt.cancel()
                        return
                    event = nxt.result()
                    data = json_text(event.to_json())
                    yield ServerSentEvent(data=data, event="search", id=event.id)
            finally:
                closing.cancel()
                self.rt.services.events.unsubscribe(feed)

        return EventSourceResponse(
            events(),
            ping=KEEP_ALIVE_S,
            ping_message_factory=lambda: ServerSentEvent(comment="keep-alive"),
            headers={"cache-control": "no-cache"},
        )

    async def _body(self, request: Request) -> bytes:
        parts: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > _MAX_BODY:
                raise AdminError(413, "content_too_long_exception", f"body over {_MAX_BODY} bytes")
            parts.append(chunk)
        return b"".join(parts)

    async def live(self, request: Request) -> Response:
        """Liveness (no token: it says nothing but that the admin listener answers)."""
        return Response(b'{"live":true}', media_type="application/json; charset=UTF-8")

    async def ready(self, request: Request) -> Response:
        """Readiness (no token): the models are loaded (the listeners open only after them) and
        the cluster answers a request within 2 s, whatever its status (a 401 is a cluster that
        is up); 503 otherwise, with why."""
        try:
            resp = await asyncio.wait_for(self.rt.services.upstream.request("HEAD", b"/", [], None), 2.0)
            resp.release()
        except (UpstreamError, TimeoutError) as e:
            reason = "the cluster does not answer" + (f": {e.kind}" if isinstance(e, UpstreamError) else "")
            return _error(503, "not_ready", reason)
        return Response(b'{"ready":true}', media_type="application/json; charset=UTF-8")

    async def health(self, request: Request) -> dict[str, object]:
        """Liveness and what is loaded."""
        cfg = self.rt.config
        store = self.rt.services.store
        shared = self.rt.services.shared_cache
        circuits = {name: self.rt.breaker(name).info() for name in self.rt.scorers}
        opened = [name for name, c in circuits.items() if c["state"] != "closed"]
        troubles = [
            self.rt.services.events.state(),
            store.error if store else None,
            shared.error if shared else None,
            f"circuit {', '.join(opened)}: answering in the cluster's order" if opened else None,
        ]
        found = [t for t in troubles if t]
        return {
            "status": "degraded" if found else "ok",
            "problems": found,
            "version": __version__,
            "uptime_s": round(time.time() - self.started, 1),
            "upstream": mask_url(cfg.upstream.url),
            "models": {name: b.info() | {"circuit": circuits[name]} for name, b in self.rt.scorers.items()},
            "routes": [{"indices": r.indices, "model": r.model, "window": r.window} for r in cfg.routes],
            "cuda": torch.cuda.is_available(),
            "events": {
                "sqlite": self.rt.config.events.sqlite,
                "in_memory": len(self.rt.services.events.ring),
                "written": self.rt.services.events.written,
                "queued": self.rt.services.events.queued,
                "dropped": self.rt.services.events.dropped,
                "reopened": self.rt.services.events.reopened,
                "writer": "stopped" if self.rt.services.events.writer_stopped else "running",
                "error": self.rt.services.events.write_error,
                "index": self.rt.config.events.index,
                "sink_error": self.rt.services.events.sink_error,
            },
            "config_store": store.health() if store is not None else None,
            "shared_cache": shared.info() if shared is not None else None,
            **({"warmup": self.rt.warmup} if self.rt.warmup else {}),
        }

    @staticmethod
    def config_view(config: Config) -> dict[str, Any]:
        """The running config as JSON, the admin token redacted."""
        data: dict[str, Any] = mask_urls(config.model_dump(mode="json"))
        if data["admin"].get("token"):
            data["admin"]["token"] = _REDACTED
        return data

    async def put_config(self, ctype: str, raw: bytes) -> dict[str, Any]:
        """Validate, apply to the next search, persist with a backup; a bad one changes nothing."""
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
            await self.rt.change(new)
        except ConfigError as e:
            raise AdminError(400, "config_exception", str(e)) from None
        except StoreConflict as e:
            raise AdminError(409, "version_conflict_engine_exception", e.reason) from None
        except StoreUnavailable as e:
            raise AdminError(503, "config_store_exception", f"nothing changed: {e}") from None
        answer: dict[str, Any] = {"acknowledged": True, "persisted": None}
        if self.config_path is not None:
            try:
                answer["persisted"] = self._persist(new)
            except OSError as e:  # a read-only mount (a Kubernetes ConfigMap): running, not kept
                reason = f"{self.config_path} cannot be written ({e.strerror or e})"
                log.warning("config changed in memory only: %s", reason)
                answer["warning"] = (
                    f"{reason}: the change runs until the sidecar restarts or the file changes;"
                    " keep it in the file's source (a ConfigMap) or in a config_store"
                )
        return {**answer, "config": self.config_view(new)}

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

    async def preview(self, request: Request) -> dict[str, Any]:
        """Thresholds tried on the recorded searches of one route, beside the running ones."""
        req = _json_object(await self._body(request), "route and thresholds")
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
        history = self._history(req.get("scope"))
        recorded = (
            self.rt.services.events.query(limit=limit)
            if history is None
            else await self._fleet_events(history, limit=limit)
        )
        events = [e for e in recorded if e.route == name]
        return {
            "route": index,
            "name": name,
            "current": figures(routes[index], events),
            "proposed": figures(proposed, events),
        }

    async def sandbox(self, request: Request) -> dict[str, Any]:
        """Score documents for a query without touching the cluster."""
        req = _json_object(await self._body(request), "query and documents")
        query, docs = req.get("query"), req.get("documents")
        instruction, model = req.get("instruction"), req.get("model")
        if not isinstance(query, str) or not query.strip():
            raise AdminError(400, "illegal_argument_exception", "query: a non-empty string is required")
        if not isinstance(docs, list) or not all(isinstance(d, str) for d in docs):
            raise AdminError(400, "illegal_argument_exception", "documents: a list of strings is required")
        if instruction is not None and not isinstance(instruction, str):
            raise AdminError(400, "illegal_argument_exception", "instruction: a string is required")
        routes = self.rt.config.routes
        route = req.get("route")
        if route is not None:  # the model of a route, by its name
            named = next((r for r in routes if r.name == route), None)
            if named is None:
                names = ", ".join(r.name for r in routes) or "none"
                raise AdminError(
                    400, "illegal_argument_exception", f"route: unknown route {route!r} ({names})"
                )
            model = model or named.model
        if model is None and routes:
            model = routes[0].model
        if model not in self.rt.scorers:
            known = ", ".join(sorted(self.rt.scorers)) or "none loaded"
            raise AdminError(
                400, "illegal_argument_exception", f"model: unknown model {model!r} (loaded: {known})"
            )
        started = time.perf_counter()
        try:
            work = ScoreRequest.of([query], docs, instruction, 60.0)
            scores = (await self.rt.score(model, work))[0].scores
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
