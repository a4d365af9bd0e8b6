"""Online experiments through a real sidecar in front of osmem-server: what each mode serves,
clicks read from UBI event writes as they pass, the figures, the guardrail."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from osmem_server import OsmemServer

from sidecar.config import ConfigError, parse_config
from tests.conftest import CORPUS, RunningSidecar, index_corpus, sidecar_config

BODY = {"query": {"match": {"text": "memory"}}, "size": 5}


def _route(index: str, experiment: dict[str, Any]) -> dict[str, Any]:
    return {
        "indices": [index],
        "model": "minilm",
        "window": 12,
        "fields": ["title", "text"],
        "template": "{title}\n{text}",
        "fusion": "replace",
        "experiment": experiment,
    }


ROUTES = [
    _route("exp-il", {"name": "il", "mode": "interleave", "identity": ["ubi.client_id", "header:X-User"]}),
    _route("exp-ab", {"name": "ab", "mode": "ab", "identity": ["cookie:uid"]}),
    _route("exp-shadow", {"name": "shadow", "mode": "shadow"}),
    _route(
        "exp-guard",
        {
            "name": "guard",
            "mode": "interleave",
            "stop_if_losing": True,
            "min_queries": 5,
            "guardrail_p": 0.05,
        },
    ),
]


@pytest.fixture(scope="module")
def lab(osmem: OsmemServer) -> Iterator[RunningSidecar]:
    for name in ("exp-il", "exp-ab", "exp-shadow", "exp-guard"):
        index_corpus(osmem.url, name, CORPUS)
    base = sidecar_config(osmem.url)
    kb = base.model_dump()["routes"][0]  # kb and docs-*: no experiment
    models = {"minilm": base.model_dump()["models"]["minilm"]}
    config = parse_config(
        {
            **base.model_dump(exclude={"routes", "models"}),
            "models": models,
            "routes": [*ROUTES, kb],
            "ubi": {"write_queries": True},
        }
    )
    running = RunningSidecar(config)
    yield running
    running.close()
    for name in ("exp-il", "exp-ab", "exp-shadow", "exp-guard", "ubi_events", "ubi_queries"):
        httpx.delete(f"{osmem.url}/{name}")


def _search(lab: RunningSidecar, index: str, client_id: str | None = None, **kw: Any) -> httpx.Response:
    body = dict(BODY, **kw.pop("body", {}))
    if client_id is not None:
        body["ext"] = {"ubi": {"client_id": client_id}}
    r = httpx.post(f"{lab.url}/{index}/_search", json=body, timeout=30, **kw)
    assert r.status_code == 200, r.text
    return r


def _event(lab: RunningSidecar, r: httpx.Response) -> dict[str, Any]:
    return httpx.get(f"{lab.admin_url}/_sidecar/events/{r.headers['x-rerank-event']}").json()


def _figures(lab: RunningSidecar, name: str) -> dict[str, Any]:
    r = httpx.get(f"{lab.admin_url}/_sidecar/experiments/{name}")
    assert r.status_code == 200, r.text
    return r.json()


def _click(
    lab: RunningSidecar, query_id: str, object_id: str, client_id: str | None = None, **kw: Any
) -> httpx.Response:
    """A click event written through the sidecar, as the searcher's app writes it (a click
    counts only for the identity that searched: its client_id, or the write's cookie)."""
    event = {
        "action_name": "click",
        "client_id": client_id,
        "query_id": query_id,
        "timestamp": "2026-12-02T10:00:00Z",
        "event_attributes": {"object": {"object_id": object_id, "object_id_field": "_id"}},
    }
    return httpx.post(f"{lab.url}/ubi_events/_doc?refresh=true", json=event, timeout=30, **kw)


def _served(lab: RunningSidecar, r: httpx.Response) -> str:
    """The arm a search was served, from its event: the answer names the experiment only."""
    name = r.headers["x-rerank-experiment"]
    assert ";" not in name  # no arm in the answer
    return f"{name}; served={_event(lab, r)['experiment']['served']}"


def _cluster(osmem: OsmemServer, index: str) -> list[str]:
    r = httpx.post(f"{osmem.url}/{index}/_search", json=dict(BODY, size=12))
    return [h["_id"] for h in r.json()["hits"]["hits"]]


def _counted(lab: RunningSidecar, name: str, clicks: int) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:  # the click is read after the cluster answered the write
        figures = _figures(lab, name)
        if figures["clicks"] >= clicks or time.monotonic() > deadline:
            return figures
        time.sleep(0.02)


def test_interleaving_merges_both_arms_credits_each_hit_and_is_stable(
    lab: RunningSidecar, osmem: OsmemServer
) -> None:
    r = _search(lab, "exp-il", "user-1")
    assert _served(lab, r) == "il; served=interleaved"
    query_id = r.json()["ext"]["ubi"]["query_id"]
    assert query_id
    event = _event(lab, r)
    ids = [h["_id"] for h in r.json()["hits"]["hits"]]
    credit = event["experiment"]["credit"]
    assert event["query_id"] == query_id and event["served"] == ids
    assert len(credit) == len(ids) and set(credit) <= {"control", "treatment"}
    cluster = _cluster(osmem, "exp-il")
    reranked = [f["id"] for f in event["final"]]
    # team draft: each arm's hits in the list keep that arm's order, each pick is that arm's
    # best hit not yet shown
    for arm, order in (("control", cluster), ("treatment", reranked)):
        mine = [i for i, c in zip(ids, credit, strict=True) if c == arm]
        assert mine == sorted(mine, key=order.index)
    assert ids[0] in (cluster[0], reranked[0])
    assert abs(credit.count("control") - credit.count("treatment")) <= 1
    # the same user and query: the same list (a second page continues it)
    again = _search(lab, "exp-il", "user-1")
    assert [h["_id"] for h in again.json()["hits"]["hits"]] == ids
    # the identity from a header when the search has no UBI client_id
    by_header = _search(lab, "exp-il", headers={"X-User": "user-1"})
    assert _served(lab, by_header) == "il; served=interleaved"


def test_a_click_written_to_ubi_events_is_counted_and_the_write_reaches_the_cluster(
    lab: RunningSidecar, osmem: OsmemServer
) -> None:
    before = _figures(lab, "il")
    r = _search(lab, "exp-il", "user-2")
    query_id = r.json()["ext"]["ubi"]["query_id"]
    event = _event(lab, r)
    ids, credit = event["served"], event["experiment"]["credit"]
    w = _click(lab, query_id, ids[0], "user-2")
    assert w.status_code == 201, w.text  # the cluster's own answer
    figures = _counted(lab, "il", before["clicks"] + 1)
    outcome = "wins" if credit[0] == "treatment" else "losses"
    assert figures[outcome] == before[outcome] + 1
    assert figures["clicked_queries"] == before["clicked_queries"] + 1
    stored = httpx.post(f"{osmem.url}/ubi_events/_search", json={"query": {"term": {"query_id": query_id}}})
    assert stored.json()["hits"]["total"]["value"] == 1  # passed through, unchanged
    # a second click on the same hit counts once; a click on a hit not served counts nowhere
    _click(lab, query_id, ids[0], "user-2")
    _click(lab, query_id, "no-such-hit", "user-2")
    time.sleep(0.2)
    assert _figures(lab, "il")["clicks"] == figures["clicks"]
    detail = _figures(lab, "il")["recent"]
    mine = next(i for i in detail if i["query_id"] == query_id)
    assert mine["clicks"] == [0] and mine["credit"] == credit


def test_clicks_in_a_bulk_write_and_through_the_feedback_api(lab: RunningSidecar) -> None:
    before = _figures(lab, "il")["clicks"]
    served = []
    for user in ("user-3", "user-4"):
        r = _search(lab, "exp-il", user)
        served.append((r.json()["ext"]["ubi"]["query_id"], r.json()["hits"]["hits"][1]["_id"]))
    (q1, o1), (q2, o2) = served
    click = {
        "action_name": "click",
        "client_id": "user-3",
        "event_attributes": {"object": {"object_id": o1}},
        "query_id": q1,
    }
    view = {"action_name": "impression", "event_attributes": {"object": {"object_id": o1}}, "query_id": q1}
    lines = [{"create": {}}, click, {"index": {}}, view, {"delete": {"_id": "x"}}]
    body = "\n".join(json.dumps(x) for x in lines) + "\n"
    headers = {"content-type": "application/x-ndjson"}
    r = httpx.post(f"{lab.url}/ubi_events/_bulk", content=body, headers=headers)
    assert r.status_code == 200, r.text
    _counted(lab, "il", before + 1)
    fb = httpx.post(
        f"{lab.admin_url}/_sidecar/feedback",
        json={
            "events": [
                {
                    "action_name": "click",
                    "client_id": "user-4",
                    "query_id": q2,
                    "event_attributes": {"object": {"object_id": o2}},
                }
            ]
        },
    )
    assert fb.status_code == 200 and fb.json() == {"received": 1, "clicks": 1, "counted": 1}
    assert _figures(lab, "il")["clicks"] == before + 2
    bad = httpx.post(f"{lab.admin_url}/_sidecar/feedback", content=b"{not json")
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "parse_exception"
    bad = httpx.post(f"{lab.admin_url}/_sidecar/feedback", json="click")
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "illegal_argument_exception"


def test_a_search_with_no_identity_gets_control_and_is_counted_apart(
    lab: RunningSidecar, osmem: OsmemServer
) -> None:
    before = _figures(lab, "il")
    r = _search(lab, "exp-il")
    assert _served(lab, r) == "il; served=control"
    assert [h["_id"] for h in r.json()["hits"]["hits"]] == _cluster(osmem, "exp-il")[:5]
    after = _figures(lab, "il")
    assert after["unidentified"] == before["unidentified"] + 1 and after["queries"] == before["queries"]


def test_ab_is_sticky_per_user_and_serves_each_arm_as_it_is(lab: RunningSidecar, osmem: OsmemServer) -> None:
    cluster = _cluster(osmem, "exp-ab")[:5]
    arms: dict[str, str] = {}
    for n in range(24):
        uid = f"u{n}"
        got = {_served(lab, _search(lab, "exp-ab", cookies={"uid": uid})) for _ in range(2)}
        assert len(got) == 1  # the same user, the same arm
        arms[uid] = got.pop().split("served=")[1]
    assert set(arms.values()) == {"control", "treatment"}
    control = next(u for u, a in arms.items() if a == "control")
    r = _search(lab, "exp-ab", cookies={"uid": control})
    assert [h["_id"] for h in r.json()["hits"]["hits"]] == cluster
    treated = next(u for u, a in arms.items() if a == "treatment")
    r = _search(lab, "exp-ab", cookies={"uid": treated})
    assert [h["_id"] for h in r.json()["hits"]["hits"]] == [f["id"] for f in _event(lab, r)["final"]][:5]
    figures = _figures(lab, "ab")
    assert figures["arms"]["control"]["queries"] + figures["arms"]["treatment"]["queries"] == 50
    query_id = r.json()["ext"]["ubi"]["query_id"]
    _click(lab, query_id, r.json()["hits"]["hits"][2]["_id"], cookies={"uid": treated})
    figures = _counted(lab, "ab", 1)
    assert figures["arms"]["treatment"]["clicked"] == 1
    assert figures["arms"]["treatment"]["mrr"] == pytest.approx(
        1 / 3 / figures["arms"]["treatment"]["queries"]
    )


def test_shadow_serves_the_cluster_and_judges_treatment_by_where_it_ranked_the_click(
    lab: RunningSidecar, osmem: OsmemServer
) -> None:
    r = _search(lab, "exp-shadow", "anyone")
    assert _served(lab, r) == "shadow; served=control"
    cluster = _cluster(osmem, "exp-shadow")
    ids = [h["_id"] for h in r.json()["hits"]["hits"]]
    assert ids == cluster[:5]
    reranked = [f["id"] for f in _event(lab, r)["final"]]
    # a click on the hit the model put first, which the cluster ranked lower
    target = reranked[0]
    assert target in ids and cluster.index(target) > 0
    _click(lab, r.json()["ext"]["ubi"]["query_id"], target, "anyone")
    figures = _counted(lab, "shadow", 1)
    assert figures["wins"] == 1 and figures["losses"] == 0


def test_the_guardrail_stops_a_losing_treatment_and_says_so(lab: RunningSidecar, osmem: OsmemServer) -> None:
    for n in range(12):
        r = _search(lab, "exp-guard", f"g{n}")
        credit = _event(lab, r)["experiment"]["credit"]
        ids = [h["_id"] for h in r.json()["hits"]["hits"]]
        _click(lab, r.json()["ext"]["ubi"]["query_id"], ids[credit.index("control")], f"g{n}")  # control wins
        figures = _counted(lab, "guard", n + 1)
        if figures["state"] == "stopped":
            break
    assert figures["state"] == "stopped" and "treatment lost" in figures["stopped_reason"]
    assert figures["losses"] >= 5 and figures["p_value"] < 0.05
    r = _search(lab, "exp-guard", "g-late")
    assert _served(lab, r) == "guard; served=control"
    assert [h["_id"] for h in r.json()["hits"]["hits"]] == _cluster(osmem, "exp-guard")[:5]
    assert _event(lab, r)["experiment"]["stopped"] is True
    metrics = httpx.get(f"{lab.admin_url}/_sidecar/metrics").text
    assert 'rerank_sidecar_experiment_stopped{experiment="guard"} 1.0' in metrics
    assert 'rerank_sidecar_experiment_outcomes{experiment="guard",outcome="losses"}' in metrics


def test_ubi_ext_is_answered_by_the_sidecar_not_sent_to_the_cluster(lab: RunningSidecar) -> None:
    body = {"query": {"match": {"text": "memory"}}, "ext": {"ubi": {"query_id": "q-given", "client_id": "c"}}}
    r = httpx.post(f"{lab.url}/kb/_search", json=body)  # kb has no experiment
    assert r.status_code == 200 and r.json()["ext"] == {"ubi": {"query_id": "q-given"}}
    assert _event(lab, r)["query_id"] == "q-given"
    plain = httpx.post(f"{lab.url}/kb/_search", json={"query": {"match": {"text": "memory"}}})
    assert "ext" not in plain.json() and "query_id" not in _event(lab, plain)


def test_the_sidecar_writes_ubi_queries_for_the_searches_it_served(
    lab: RunningSidecar, osmem: OsmemServer
) -> None:
    r = _search(lab, "exp-il", body={"ext": {"ubi": {"client_id": "writer", "query_id": "q-written"}}})
    served = [h["_id"] for h in r.json()["hits"]["hits"]]
    deadline = time.monotonic() + 10
    while True:
        httpx.post(f"{osmem.url}/ubi_queries/_refresh")
        got = httpx.get(f"{osmem.url}/ubi_queries/_doc/q-written")
        if got.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert got.status_code == 200, got.text
    doc = got.json()["_source"]
    assert doc["query_id"] == "q-written" and doc["client_id"] == "writer" and doc["user_query"] == "memory"
    assert doc["query_response_object_ids"] == served
    assert doc["query_attributes"]["experiment"] == "il" and doc["query_attributes"]["arm"] == "interleaved"


@pytest.mark.parametrize(
    ("experiment", "message"),
    [
        ({"mode": "split"}, "routes.0.experiment.mode"),
        ({"mode": "ab", "control": {"window": 5}}, "window: an arm may set only"),
        ({"mode": "ab", "control": {"model": "nope"}}, "experiment.control.model: unknown model 'nope'"),
        ({"mode": "ab", "control": "route"}, "the same arm"),
        ({"mode": "ab", "identity": ["session"]}, "expected ubi.client_id, header:NAME or cookie:NAME"),
        ({"mode": "ab", "control": {"fusion": "best"}}, "experiment.control.fusion"),
    ],
)
def test_experiment_config_errors_name_the_key(experiment: dict[str, Any], message: str) -> None:
    data = {
        "models": {"m": {"backend": "bi-encoder", "model": "x"}},
        "routes": [{"indices": ["a"], "model": "m", "fields": ["t"], "experiment": experiment}],
    }
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_config(data)


async def test_the_experiments_screen_shows_each_experiment_and_the_clicked_list(lab: RunningSidecar) -> None:
    from textual.widgets import DataTable, Static

    from tests.tui.conftest import until
    from tui.app import SidecarTUI
    from tui.screens.experiments import ExperimentsScreen

    r = _search(lab, "exp-il", "tui-user")
    ids = [h["_id"] for h in r.json()["hits"]["hits"]]
    _click(lab, r.json()["ext"]["ubi"]["query_id"], ids[1], "tui-user")
    _counted(lab, "il", 1)
    app = SidecarTUI([lab.admin_url])
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: app.connected[app.client.name][0])
        await pilot.press("x")
        assert isinstance(app.screen, ExperimentsScreen)
        table = app.screen.query_one("#exp-table", DataTable)
        await until(pilot, lambda: table.row_count == 4)
        lines = {str(table.get_row_at(i)[0]): [str(c) for c in table.get_row_at(i)] for i in range(4)}
        figures = _figures(lab, "il")
        il = lines["il"]
        assert il[7] == "interleave" and il[6] == f"{figures['wins']}/{figures['losses']}/{figures['ties']}"
        assert "●" in il[3] and "│" in il[3]
        assert lines["ab"][6].startswith("CTR ")
        searches = app.screen.query_one("#exp-searches", DataTable)
        await until(pilot, lambda: searches.row_count > 0)
        shown = str(app.screen.query_one("#exp-list", Static).render())
        assert "served interleaved" in shown
        assert "  2 ● " in shown and ids[1] in shown  # the clicked hit, its arm's letter after the mark
        # the next experiment's searches when the cursor moves to it
        for n in range(3):
            _search(lab, "exp-ab", cookies={"uid": f"tui-{n}"})
        table.focus()
        await pilot.press("down")
        await until(pilot, lambda: {str(searches.get_row_at(0)[1])} <= {"control", "treatment"})
        assert table.cursor_row == 1


def test_each_msearch_sub_search_runs_its_routes_experiment(lab: RunningSidecar) -> None:
    lines = [
        {"index": "exp-il"},
        {"query": {"match": {"text": "memory"}}, "size": 4, "ext": {"ubi": {"client_id": "ms-user"}}},
        {"index": "kb"},
        {"query": {"match": {"text": "memory"}}, "size": 4},
        {"index": "exp-il"},
        {"query": {"match": {"text": "memory"}}, "size": 4},  # no identity: control
    ]
    body = "\n".join(json.dumps(x) for x in lines) + "\n"
    r = httpx.post(f"{lab.url}/_msearch", content=body, headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 200, r.text
    first, plain, anonymous = r.json()["responses"]
    assert first["ext"]["ubi"]["query_id"] and anonymous["ext"]["ubi"]["query_id"]
    assert "ext" not in plain
    recent = {i["query_id"]: i for i in _figures(lab, "il")["recent"]}
    assert recent[first["ext"]["ubi"]["query_id"]]["served"] == "interleaved"
    assert recent[anonymous["ext"]["ubi"]["query_id"]]["served"] == "control"
