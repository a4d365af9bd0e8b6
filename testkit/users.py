"""Simulated users for online experiments: searches with a UBI client_id through a sidecar,
clicks drawn from a cascade click model over a judged dataset's qrels, written to
``ubi_events`` through the sidecar as an instrumented app writes them.

The click model (a cascade with position bias and noise, in the style of Chapelle et al.
2009 and the interleaving simulations of Hofmann et al. 2011): the user reads the page from
the top; at each hit they may give up first (``p_quit`` per hit read: deeper hits are seen
less), click a relevant hit with ``p_click_relevant`` and a non-relevant one with
``p_click_other`` (noise), and after a click stop with ``p_stop``."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class ClickModel:
    """A cascade user with position bias and noise."""

    p_quit: float = 0.15
    p_click_relevant: float = 0.9
    p_click_other: float = 0.1
    p_stop: float = 0.6

    def clicks(self, ids: Sequence[str], relevant: Mapping[str, int], rng: random.Random) -> list[str]:
        """The hits a user clicks on this page, in the order read."""
        out = []
        for doc in ids:
            if rng.random() < self.p_quit:
                break
            p = self.p_click_relevant if relevant.get(doc, 0) > 0 else self.p_click_other
            if rng.random() < p:
                out.append(doc)
                if rng.random() < self.p_stop:
                    break
        return out


def click_event(query_id: str, client_id: str, object_id: str, position: int) -> dict[str, Any]:
    """A UBI 1.0 click event."""
    return {
        "action_name": "click",
        "client_id": client_id,
        "query_id": query_id,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "message_type": "CLICK_THROUGH",
        "event_attributes": {
            "object": {"object_id": object_id, "object_id_field": "_id"},
            "position": {"ordinal": position},
        },
    }


@dataclass
class Session:
    """Simulated users of one index through one sidecar."""

    proxy: httpx.Client
    index: str
    queries: Mapping[str, str]  # query id -> text
    qrels: Mapping[str, Mapping[str, int]]
    model: ClickModel = ClickModel()
    size: int = 10
    field: str = "text"

    def search(self, rng: random.Random, user: str) -> tuple[str, list[str], list[str]]:
        """One user searches one query and clicks: (query_id, page ids, clicked ids)."""
        qid = rng.choice(sorted(self.queries))
        body = {
            "query": {"multi_match": {"query": self.queries[qid], "fields": ["title", self.field]}},
            "size": self.size,
            "ext": {"ubi": {"client_id": user}},
        }
        r = self.proxy.post(f"/{self.index}/_search", json=body)
        r.raise_for_status()
        answer = r.json()
        ids = [h["_id"] for h in answer["hits"]["hits"]]
        query_id = answer["ext"]["ubi"]["query_id"]
        clicked = self.model.clicks(ids, self.qrels.get(qid, {}), rng)
        if clicked:
            lines = []
            for doc in clicked:
                lines.append(json.dumps({"create": {}}))
                lines.append(json.dumps(click_event(query_id, user, doc, ids.index(doc))))
            w = self.proxy.post(
                "/ubi_events/_bulk",
                content="\n".join(lines) + "\n",
                headers={"content-type": "application/x-ndjson"},
            )
            w.raise_for_status()
        return query_id, ids, clicked

    def run(self, searches: int, seed: int, users: int = 1_000_000) -> None:
        """``searches`` searches by users drawn at random (each one a UBI client_id)."""
        rng = random.Random(seed)
        for _ in range(searches):
            self.search(rng, f"user-{seed}-{rng.randrange(users)}")


def minilm_config(upstream: str, routes: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A sidecar config on loopback (ports the system picks) with the packaged MiniLM as
    ``minilm`` for these routes."""
    return {
        "listen": "127.0.0.1:0",
        "admin": {"listen": "127.0.0.1:0"},
        "upstream": {"url": upstream},
        "models": {"minilm": {"backend": "bi-encoder", "model": "all-MiniLM-L6-v2", "device": "cpu"}},
        "routes": routes,
        **extra,
    }


def experiment_route(index: str, experiment: dict[str, Any] | None) -> dict[str, Any]:
    """The simulations' route: MiniLM over title and text, window 20, fusion rrf."""
    return {
        "name": index,
        "indices": [index],
        "model": "minilm",
        "window": 20,
        "fields": ["title", "text"],
        "template": "{title}\n{text}",
        "fusion": "rrf",
        "experiment": experiment,
    }
