"""The admin API of one sidecar, over HTTP only: the TUI never imports the service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import aconnect_sse

from sidecar.events.event import SearchEvent


class AdminError(Exception):
    """An admin call that failed: the sidecar's own reason where it gave one."""


class AdminClient:
    """Calls to one sidecar's ``/_sidecar`` API with an optional bearer token."""

    def __init__(self, url: str, token: str | None = None, *, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout_s, trust_env=False)
        self._token_headers = headers

    @property
    def name(self) -> str:
        """host:port, to tell sources apart."""
        return self.url.split("://", 1)[-1]

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            r = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise AdminError(f"{self.name}: {type(e).__name__}: {e}".rstrip(": ")) from None
        try:
            body = r.json()
        except ValueError:
            body = None
        if r.status_code != 200:
            reason = body.get("error", {}).get("reason") if isinstance(body, dict) else None
            raise AdminError(reason or f"{self.name}: HTTP {r.status_code}")
        return body

    async def health(self) -> dict[str, Any]:
        """``GET /_sidecar/health``."""
        result: dict[str, Any] = await self._call("GET", "/_sidecar/health")
        return result

    async def stats(self, scope: str = "local") -> dict[str, Any]:
        """``GET /_sidecar/stats``: the last minute's figures (``fleet``: every sidecar's)."""
        params = {"scope": scope} if scope != "local" else None
        result: dict[str, Any] = await self._call("GET", "/_sidecar/stats", params=params)
        return result

    async def events(self, limit: int = 200) -> list[SearchEvent]:
        """Recent events, newest first."""
        result = await self._call("GET", "/_sidecar/events", params={"limit": limit})
        return [SearchEvent.model_validate(e) for e in result["events"]]

    async def experiments(self) -> list[dict[str, Any]]:
        """``GET /_sidecar/experiments``: every experiment's figures."""
        result = await self._call("GET", "/_sidecar/experiments")
        return list(result["experiments"])

    async def experiment(self, name: str) -> dict[str, Any]:
        """One experiment's figures and latest searches."""
        result: dict[str, Any] = await self._call("GET", f"/_sidecar/experiments/{quote(name, safe='')}")
        return result

    async def config(self) -> dict[str, Any]:
        """The running config (token redacted)."""
        result: dict[str, Any] = await self._call("GET", "/_sidecar/config")
        return result

    async def put_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """Replace the config; AdminError with the validation message when it is refused."""
        result: dict[str, Any] = await self._call("PUT", "/_sidecar/config", json=config)
        return result

    async def preview(self, route: str | int, thresholds: dict[str, Any], limit: int = 500) -> dict[str, Any]:
        """What ``thresholds`` would do to the recorded searches of a route (by name)."""
        body = {"route": route, "thresholds": thresholds, "limit": limit}
        result: dict[str, Any] = await self._call("POST", "/_sidecar/preview", json=body)
        return result

    async def rerank(
        self, query: str, documents: list[str], instruction: str | None = None
    ) -> dict[str, Any]:
        """Score documents for a query with the sidecar's model, no cluster involved."""
        body: dict[str, Any] = {"query": query, "documents": documents}
        if instruction:
            body["instruction"] = instruction
        result: dict[str, Any] = await self._call("POST", "/_sidecar/rerank", json=body)
        return result

    async def stream(self) -> AsyncIterator[SearchEvent]:
        """Search events as the sidecar records them (server-sent events); ends when the
        connection does, raising AdminError when it cannot be opened."""
        timeout = httpx.Timeout(10.0, read=45.0)  # the server sends a comment every 15 s
        try:
            async with aconnect_sse(self._http, "GET", "/_sidecar/events/stream", timeout=timeout) as source:
                if source.response.status_code != 200:
                    raise AdminError(f"{self.name}: event stream: HTTP {source.response.status_code}")
                async for sse in source.aiter_sse():
                    if sse.event != "search":
                        continue
                    try:
                        yield SearchEvent.model_validate_json(sse.data)
                    except ValueError:  # pydantic's ValidationError too: a record we cannot read
                        pass
        except httpx.HTTPError as e:
            raise AdminError(f"{self.name}: {type(e).__name__}") from None

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()
