"""POST /_sidecar/preview: thresholds tried on recorded searches with the policy's own code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from osmem_server import OsmemServer

from tests.conftest import BrokenBackend, RunningSidecar, SlowBackend, sidecar_config


@pytest.fixture(scope="module")
def recorded(osmem: OsmemServer) -> Iterator[RunningSidecar]:
    running = RunningSidecar(
        sidecar_config(osmem.url), backends={"slow": SlowBackend(), "broken": BrokenBackend()}
    )
    for q in ("lora rank", "gpu memory", "java types", "shipping"):
        httpx.post(f"{running.url}/kb/_search", json={"query": {"match": {"text": q}}, "size": 3})
    httpx.post(
        f"{running.url}/kb/_search", json={"query": {"match": {"text": "x"}}}, headers={"X-Rerank": "off"}
    )
    yield running
    running.close()


def preview(running: RunningSidecar, body: Any) -> httpx.Response:
    return httpx.post(f"{running.admin_url}/_sidecar/preview", json=body)


def test_figures_match_a_hand_count_over_the_recorded_windows(recorded: RunningSidecar) -> None:
    events = httpx.get(f"{recorded.admin_url}/_sidecar/events").json()["events"]
    applied = [e for e in events if e["status"] == "applied"]
    assert len(applied) == 4 and all("model_score" in b for e in applied for b in e["baseline"])
    assert all(e["page"] == {"from": 0, "size": 3} for e in applied)
    threshold = 0.3
    r = preview(recorded, {"route": 0, "thresholds": {"min_score": threshold}})
    assert r.status_code == 200, r.text
    body = r.json()
    windows = [[b["model_score"] for b in e["baseline"]] for e in applied]
    cut = sum(sum(s < threshold for s in w) for w in windows)
    assert body["current"] == {
        "searches": 4,
        "hits_cut": 0.0,
        "empty_results": 0.0,
        "top1_changed": round(sum(e["final"][0]["original_rank"] != 1 for e in applied) / 4, 4),
    }
    assert body["proposed"]["searches"] == 4
    assert body["proposed"]["hits_cut"] == round(cut / sum(len(w) for w in windows), 4)
    assert body["proposed"]["empty_results"] == round(
        sum(all(s < threshold for s in w) for w in windows) / 4, 4
    )
    everything = preview(recorded, {"route": 0, "thresholds": {"min_score": 99}}).json()["proposed"]
    assert everything["hits_cut"] == 1.0 and everything["empty_results"] == 1.0


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"route": 0, "thresholds": {"max_drop": -1}}, 400, "routes.0.max_drop"),
        ({"route": 0, "thresholds": {"window": 5}}, 400, "routes.0.window: not a threshold"),
        ({"route": 9, "thresholds": {}}, 400, "route: an index below 3"),
        ({"route": 0, "thresholds": []}, 400, "thresholds: an object"),
        ({"route": 0, "limit": 0}, 400, "limit must be between"),
        ([1, 2], 400, "expected a JSON object"),
    ],
)
def test_bad_previews_get_the_reason(recorded: RunningSidecar, body: Any, status: int, reason: str) -> None:
    r = preview(recorded, body)
    assert r.status_code == status and reason in r.json()["error"]["reason"]


def test_a_preview_keeps_hits_without_text_as_the_sidecar_did() -> None:
    """A hit the model did not read (no text) is never cut by min_score, in the preview too."""
    from sidecar.admin.preview import figures
    from sidecar.config import RouteConfig
    from sidecar.events.event import BaselineHit, SearchEvent
    from sidecar.vocab import Status

    baseline = [
        BaselineHit(id="a", score=3.0, rank=1, model_score=0.9),
        BaselineHit(id="b", score=2.0, rank=2, model_score=0.0, no_text=True),
        BaselineHit(id="c", score=1.0, rank=3, model_score=0.1),
    ]
    event = SearchEvent(id="e", time=0.0, index="kb", status=Status.APPLIED, baseline=baseline)
    route = RouteConfig(indices=["kb"], model="m", fields=["text"], min_score=0.5, fusion="replace")
    assert figures(route, [event])["hits_cut"] == round(1 / 3, 4)  # c only: b had no text to judge
    assert SearchEvent.model_validate_json(json.dumps(event.to_json())).baseline[1].no_text is True
    assert "no_text" not in event.to_json()["baseline"][0]  # absent where it is not so
