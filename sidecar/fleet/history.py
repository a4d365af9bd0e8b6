"""The fleet's history: the events index every sidecar writes (``events.index``) and the UBI
events index the apps write, read back so a figure does not depend on which replica answered."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any

import httpx
from pydantic import ValidationError

from sidecar.credentials import basic_auth
from sidecar.events.event import SearchEvent
from sidecar.events.ubi import clicks as click_events
from sidecar.experiments.assign import clicker
from sidecar.experiments.tracker import ReplayedClick

MAX_EVENTS = 10_000  # one search's page at most (index.max_result_window's default)


class HistoryError(Exception):
    """The fleet's indices could not be read."""


class FleetHistory:
    """Reads the shared events index (and the UBI events index) of a cluster."""

    def __init__(
        self, url: str, index: str, verify: ssl.SSLContext | bool, basic_auth_env: str | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.index = index
        self.http = httpx.AsyncClient(
            base_url=self.url,
            auth=basic_auth(basic_auth_env, "events.basic_auth_env"),
            verify=verify,
            timeout=30,
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _search(self, index: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            r = await self.http.post(f"/{index}/_search", json=body, params={"ignore_unavailable": "true"})
        except httpx.HTTPError as e:
            raise HistoryError(f"{self.url}/{index}: {type(e).__name__}: {e}") from None
        if r.status_code != 200:
            raise HistoryError(f"{self.url}/{index}/_search: HTTP {r.status_code}: {r.text[:200]}")
        hits = r.json().get("hits", {}).get("hits", [])
        return [h.get("_source") or {} for h in hits]

    async def events(
        self, since: float | None = None, limit: int = MAX_EVENTS, experiment: bool = False
    ) -> list[SearchEvent]:
        """The newest events of every sidecar (since ``since``, epoch seconds), newest first;
        with ``experiment``, only searches an experiment served."""
        filters: list[dict[str, Any]] = []
        if since is not None:
            filters.append({"range": {"time": {"gte": since}}})
        if experiment:
            filters.append({"exists": {"field": "experiment.name"}})
        body = {
            "query": {"bool": {"filter": filters}} if filters else {"match_all": {}},
            "sort": [{"time": {"order": "desc"}}],
            "size": min(limit, MAX_EVENTS),
        }
        out = []
        for source in await self._search(self.index, body):
            try:
                out.append(SearchEvent.model_validate(source))
            except ValidationError:
                continue  # a document of another shape in the index
        return out

    async def clicks(
        self, index: str, query_ids: Sequence[str], actions: Sequence[str]
    ) -> list[ReplayedClick]:
        """The click events the apps wrote for these searches (each one's identity found from
        its client_id, as the live sidecar finds it)."""
        found: list[ReplayedClick] = []
        for start in range(0, len(query_ids), 1000):
            chunk = list(query_ids[start : start + 1000])
            # query_id is a keyword in the UBI plugin's mapping, text with a .keyword in a dynamic one
            body = {
                "query": {
                    "bool": {
                        "should": [{"terms": {"query_id": chunk}}, {"terms": {"query_id.keyword": chunk}}],
                        "minimum_should_match": 1,
                    }
                },
                "size": MAX_EVENTS,
            }
            for c in click_events(await self._search(index, body), actions):
                found.append(ReplayedClick(c.query_id, c.object_id, None, None, clicker(c)))
        return found
