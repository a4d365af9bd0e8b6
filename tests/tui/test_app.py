"""The TUI against a real sidecar in front of osmem-server, driven by Textual's Pilot."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import yaml
from opensearchpy import OpenSearch
from osmem_server import OsmemServer
from textual.widgets import DataTable, Static

from tests.conftest import RunningSidecar
from tests.tui.conftest import TOKEN, start, until
from tui.app import SidecarTUI
from tui.screens.diff import DiffScreen
from tui.screens.help import HelpScreen
from tui.screens.live import LiveScreen
from tui.screens.sandbox import SandboxScreen
from tui.screens.tune import TuneScreen


def search(running: RunningSidecar, text: str, size: int = 5) -> dict[str, Any]:
    client = OpenSearch(hosts=[running.url])
    return client.search(index="kb", body={"query": {"match": {"text": text}}, "size": size})


def rows(app: SidecarTUI, table_id: str) -> list[list[str]]:
    table = app.screen.query_one(table_id, DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def text_of(app: SidecarTUI, static_id: str) -> str:
    return str(app.screen.query_one(static_id, Static).render())


def feed_queries(app: SidecarTUI) -> list[str]:
    screen = app.screen
    return [str(e.query) for _, e in screen.shown] if isinstance(screen, LiveScreen) else []


async def test_the_feed_shows_searches_and_the_diff_shows_the_moves(
    watched: tuple[RunningSidecar, Path], osmem: OsmemServer
) -> None:
    running, _ = watched
    app = SidecarTUI([running.admin_url], TOKEN)
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: app.connected[app.client.name][0])
        assert rows(app, "#live-feed") == []  # an empty history is fine
        reranked = search(running, "what LoRA rank should I use")
        search(running, "shipping to Norway")
        await until(
            pilot, lambda: feed_queries(app)[:2] == ["shipping to Norway", "what LoRA rank should I use"]
        )
        assert "QPS" in text_of(app, "#live-figures") or "waiting" in text_of(app, "#live-figures")
        await until(pilot, lambda: "QPS" in text_of(app, "#live-figures"))
        live = rows(app, "#live-feed")
        assert live[1][1:4] == ["kb", "what LoRA rank should I use", "applied"]

        await pilot.press("down", "enter")
        assert isinstance(app.screen, DiffScreen)
        # the moves against the cluster's own order, computed here from the two answers
        direct = OpenSearch(hosts=[osmem.url]).search(
            index="kb", body={"query": {"match": {"text": "what LoRA rank should I use"}}, "size": 16}
        )
        baseline_ids = [h["_id"] for h in direct["hits"]["hits"]]
        shown = rows(app, "#diff-reranked")
        for rank, hit in enumerate(reranked["hits"]["hits"], 1):
            was = baseline_ids.index(hit["_id"]) + 1
            expected = "=" if was == rank else (f"▲{was - rank}" if was > rank else f"▼{rank - was}")
            if rank <= 5 < was:
                expected += " new"
            assert shown[rank - 1][0] == str(rank) and shown[rank - 1][3] == expected
        left = [r[1] for r in rows(app, "#diff-baseline") if r[3] == "left"]
        page = {h["_source"]["title"] for h in reranked["hits"]["hits"]}
        assert all(title not in page for title in left)
        assert "scores" in text_of(app, "#diff-hist")
        await pilot.press("right")  # the next (older) search: none, stays on the last
        await pilot.press("left")
        assert '"shipping to Norway"' in text_of(app, "#diff-title")
        await pilot.press("escape")
        assert isinstance(app.screen, LiveScreen)


async def test_a_search_in_a_language_the_model_cannot_read_says_so(
    watched: tuple[RunningSidecar, Path],
) -> None:
    running, _ = watched
    app = SidecarTUI([running.admin_url], TOKEN)
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: app.connected[app.client.name][0])
        search(running, "显存不足怎么办")  # all-MiniLM-L6-v2 reads English: the cluster's order
        await until(pilot, lambda: "显存不足怎么办" in feed_queries(app))
        row = next(r for r in rows(app, "#live-feed") if r[2] == "显存不足怎么办")
        assert row[3] == "bypass" and row[-1] == "language zh"
        await pilot.press("enter")
        assert isinstance(app.screen, DiffScreen)
        assert "(language)" in text_of(app, "#diff-title")
        assert "language zh: the route's model does not read it" in text_of(app, "#diff-rules")


async def test_filter_pause_and_help(watched: tuple[RunningSidecar, Path]) -> None:
    running, _ = watched
    app = SidecarTUI([running.admin_url], TOKEN)
    async with app.run_test(size=(100, 30)) as pilot:
        search(running, "lora rank")
        httpx.post(
            f"{running.url}/kb/_search", json={"query": {"match": {"text": "x"}}}, headers={"X-Rerank": "off"}
        )
        await until(pilot, lambda: len(rows(app, "#live-feed")) == 2)
        await pilot.press("slash")
        await pilot.press(*"status:bypass")
        await pilot.press("enter")
        await until(pilot, lambda: [r[3] for r in rows(app, "#live-feed")] == ["bypass"])
        await pilot.press("escape")
        await until(pilot, lambda: len(rows(app, "#live-feed")) == 2)
        await pilot.press("p")
        search(running, "java types")
        await until(pilot, lambda: len(app.events) == 3)
        await pilot.pause(0.5)
        assert len(rows(app, "#live-feed")) == 2 and "paused" in text_of(app, "#live-title")
        await pilot.press("p")
        await until(pilot, lambda: len(rows(app, "#live-feed")) == 3)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, LiveScreen)


async def test_a_threshold_saved_from_tune_is_in_force_and_in_the_file(
    watched: tuple[RunningSidecar, Path],
) -> None:
    running, path = watched
    for q in ("lora rank", "gpu memory", "java types"):
        search(running, q, size=10)
    app = SidecarTUI([running.admin_url], TOKEN)
    async with app.run_test(size=(110, 30)) as pilot:
        await pilot.press("t")
        assert isinstance(app.screen, TuneScreen)
        screen = app.screen
        await until(pilot, lambda: bool(screen.config))
        await until(pilot, lambda: "preview: last 3" in text_of(app, "#tune-preview"))
        await pilot.press("down", "down", "down")  # max_hits
        await pilot.press("enter")
        await pilot.press(*"2")
        await pilot.press("enter")
        assert screen.values["max_hits"] == 2

        def cut_shares() -> list[str]:
            line = next((ln for ln in text_of(app, "#tune-preview").splitlines() if "hits cut" in ln), "")
            return line.split()[2:]

        # every window keeps 2 hits: the share cut, from the recorded windows
        recorded = httpx.get(
            f"{running.admin_url}/_sidecar/events", headers={"authorization": f"Bearer {TOKEN}"}
        ).json()["events"]
        windows = [len(e["baseline"]) for e in recorded]
        expected = f"{sum(w - min(w, 2) for w in windows) / sum(windows) * 100:.1f}%"
        await until(pilot, lambda: cut_shares() == ["0.0%", expected])
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "saved max_hits=2" in text_of(app, "#tune-status"))
    assert len(search(running, "lora rank", size=10)["hits"]["hits"]) == 2
    assert yaml.safe_load(path.read_text())["routes"][0]["max_hits"] == 2


async def test_a_bad_value_shows_the_sidecars_validation_error(watched: tuple[RunningSidecar, Path]) -> None:
    running, path = watched
    app = SidecarTUI([running.admin_url], TOKEN)
    async with app.run_test(size=(110, 30)) as pilot:
        await pilot.press("t")
        screen = app.screen
        await until(pilot, lambda: bool(getattr(screen, "config", None)))
        await pilot.press("down", "down")  # max_drop
        await pilot.press("enter", *"-1", "enter")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "not saved" in text_of(app, "#tune-status"))
        assert "routes.0.max_drop" in text_of(app, "#tune-status")
    assert "max_drop" not in yaml.safe_load(path.read_text())["routes"][0]


async def test_the_sandbox_ranks_a_loaded_file(watched: tuple[RunningSidecar, Path], tmp_path: Path) -> None:
    running, _ = watched
    docs = [
        "Shipping to Norway takes a week.",
        "Pick a LoRA rank of 8 or 16.",
        "Java has eight primitive types.",
    ]
    (tmp_path / "docs.jsonl").write_text("\n".join(f'{{"body": "{d}"}}' for d in docs))
    app = SidecarTUI([running.admin_url], TOKEN)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("s")
        assert isinstance(app.screen, SandboxScreen)
        await pilot.press(*"which lora rank")
        await pilot.press("ctrl+o")
        await pilot.press(*f"{tmp_path / 'docs.jsonl'}#body")
        await pilot.press("enter")
        await until(pilot, lambda: "loaded 3 documents" in text_of(app, "#sandbox-status"))
        await pilot.press("ctrl+r")
        await until(pilot, lambda: len(rows(app, "#sandbox-ranking")) == 3)
        scores = running.scores("minilm", "which lora rank", docs)
        expected = sorted(range(3), key=lambda i: -scores[i])
        ranking = rows(app, "#sandbox-ranking")
        for row, i in zip(ranking, expected, strict=True):  # cut to the pane's width, never another text
            assert row[4] == docs[i] or (row[4].endswith("…") and docs[i].startswith(row[4][:-1]))
        assert [float(r[1]) for r in ranking] == pytest.approx([scores[i] for i in expected], abs=1e-4)
        # each document's input number (from 1, as typed) and its move against the input order
        assert [r[2] for r in ranking] == [str(i + 1) for i in expected]
        marks = {0: "=", 1: "▲1", 2: "▲2", -1: "▼1", -2: "▼2"}
        assert [r[3] for r in ranking] == [marks[i - rank] for rank, i in enumerate(expected)]
        # a bad file: one clear line, nothing lost
        await pilot.press("ctrl+o")
        await pilot.press(*"/nope/missing.txt", "enter")
        await until(pilot, lambda: "No such file" in text_of(app, "#sandbox-status"))
        assert len(rows(app, "#sandbox-ranking")) == 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_disconnect_shows_and_reconnects_by_itself(osmem: OsmemServer, tmp_path: Path) -> None:
    admin = f"127.0.0.1:{free_port()}"
    running, _ = start(osmem, tmp_path, admin)
    app = SidecarTUI([f"http://{admin}"], TOKEN)
    try:
        async with app.run_test(size=(120, 30)) as pilot:
            await until(pilot, lambda: app.connected[admin][0])
            search(running, "lora rank")
            await until(pilot, lambda: len(app.events) == 1)
            running.close()
            await until(pilot, lambda: not app.connected[admin][0])
            await until(pilot, lambda: "○" in text_of(app, "#live-title"))
            running, _ = start(osmem, tmp_path, admin)
            await until(pilot, lambda: app.connected[admin][0], timeout=30)
            search(running, "gpu memory")
            await until(pilot, lambda: "gpu memory" in feed_queries(app))
            assert "●" in text_of(app, "#live-title")
    finally:
        running.close()


async def test_several_sidecars_odd_queries_and_a_wrong_token(
    watched: tuple[RunningSidecar, Path], osmem: OsmemServer, tmp_path: Path
) -> None:
    first, _ = watched
    (tmp_path / "b").mkdir()
    second, _ = start(osmem, tmp_path / "b")
    try:
        odd = ["‮rtl‬ zero\u200bwidth 🦀 \x07bell", "x" * 5000, "显存不够怎么办"]
        for q in odd:
            search(first, q)
        search(second, "lora rank")
        app = SidecarTUI([first.admin_url, second.admin_url], TOKEN)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: len(app.events) == 4)
            await until(pilot, lambda: len(rows(app, "#live-feed")) == 4)
            header = [str(c.label) for c in app.screen.query_one("#live-feed", DataTable).columns.values()]
            assert "src" in header
            sources = {r[1] for r in rows(app, "#live-feed")}
            assert sources == {first.admin_url.split("//")[1], second.admin_url.split("//")[1]}
            await pilot.press("enter")
            assert isinstance(app.screen, DiffScreen)
            for _ in odd:
                await pilot.press("right")
            await pilot.press("escape")
        bad = SidecarTUI([first.admin_url], "wrong")
        async with bad.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: "token" in bad.connected[first.admin_url.split("//")[1]][1])
            await until(pilot, lambda: "○" in text_of(bad, "#live-title"))
    finally:
        second.close()


def test_the_help_is_generated_from_every_screens_bindings() -> None:
    from textual.binding import Binding, BindingType

    from tui.screens.base import BaseScreen
    from tui.screens.distribution import DistributionScreen
    from tui.screens.help import help_text

    screens: list[type[BaseScreen]] = [LiveScreen, DiffScreen, DistributionScreen, TuneScreen, SandboxScreen]
    text = help_text(screens, SidecarTUI.BINDINGS).plain
    for screen in screens:
        assert screen.HELP_NAME in text
        for b in screen.BINDINGS:
            assert isinstance(b, Binding) and (b.tooltip or b.description) in text, (screen, b.key)

    class Extended(DistributionScreen):  # a screen's new key is in the help with no other edit
        BINDINGS: ClassVar[list[BindingType]] = [Binding("z", "zoom", "zoom", tooltip="zoom into the scores")]
        HELP_NAME = "Extended"

    extended = help_text([Extended], []).plain
    assert "zoom into the scores" in extended and "next index" in extended and "esc     back" in extended


async def test_a_bad_value_in_tune_says_what_is_expected_until_a_good_one(
    watched: tuple[RunningSidecar, Path],
) -> None:
    running, _ = watched
    app = SidecarTUI([running.admin_url], TOKEN)
    async with app.run_test(size=(110, 30)) as pilot:
        await pilot.press("t")
        screen = app.screen
        assert isinstance(screen, TuneScreen)
        await until(pilot, lambda: bool(screen.config))
        await pilot.press("down", "down", "down", "enter", *"abc", "enter")  # max_hits
        await until(
            pilot, lambda: "max_hits: a whole number, or off, not 'abc'" in text_of(app, "#tune-status")
        )
        assert "invalid literal" not in text_of(app, "#tune-status")
        await pilot.press("enter", "backspace", "backspace", "backspace", "4", "enter")
        await until(
            pilot, lambda: text_of(app, "#tune-status").strip() == "" and screen.values["max_hits"] == 4
        )


async def test_the_experiments_screen_says_how_to_start_one(watched: tuple[RunningSidecar, Path]) -> None:
    running, _ = watched
    app = SidecarTUI([running.admin_url], TOKEN)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.connected[app.client.name][0])
        await pilot.press("x")
        await until(pilot, lambda: "experiment:" in text_of(app, "#exp-empty"))
        assert "docs/experiments.md" in text_of(app, "#exp-empty")  # a page that exists
        assert (Path(__file__).resolve().parents[2] / "docs" / "experiments.md").is_file()
        assert "Experiments ▸" in text_of(app, "#exp-title")


def test_the_help_wraps_under_each_description_on_a_narrow_terminal() -> None:
    from tui.screens.diff import DiffScreen
    from tui.screens.experiments import ExperimentsScreen
    from tui.screens.help import help_text

    narrow = help_text([LiveScreen, DiffScreen, ExperimentsScreen], SidecarTUI.BINDINGS, 56).plain
    lines = narrow.splitlines()
    assert max(len(line) for line in lines) <= 56
    keys = [line for line in lines if line.startswith(" ")]
    assert any(line.startswith(" " * 10) and line.strip() for line in keys)  # a wrapped description
    assert all(line.startswith(("  ", " " * 10)) for line in keys)
    wide = help_text([LiveScreen], SidecarTUI.BINDINGS).plain
    assert any(len(line) > 60 for line in wide.splitlines())  # two keys a line where there is room


async def test_a_threshold_lands_on_its_route_by_name_after_the_routes_are_reordered(
    watched: tuple[RunningSidecar, Path],
) -> None:
    running, path = watched
    auth = {"authorization": f"Bearer {TOKEN}"}
    app = SidecarTUI([running.admin_url], TOKEN)
    async with app.run_test(size=(110, 30)) as pilot:
        await pilot.press("t")
        screen = app.screen
        assert isinstance(screen, TuneScreen)
        await until(pilot, lambda: bool(screen.config))
        tuned = screen.running()["name"]
        # another operator puts a new route in front while the screen is open
        config = httpx.get(f"{running.admin_url}/_sidecar/config", headers=auth).json()
        first = {**config["routes"][0], "name": "in-front", "indices": ["other-*"]}
        config["routes"] = [first, *config["routes"]]
        r = httpx.put(f"{running.admin_url}/_sidecar/config", json=config, headers=auth)
        assert r.status_code == 200, r.text
        await pilot.press("down", "down", "down", "enter", *"2", "enter")  # max_hits
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "saved max_hits=2" in text_of(app, "#tune-status"))
    routes = {r["name"]: r for r in yaml.safe_load(path.read_text())["routes"]}
    assert routes[tuned]["max_hits"] == 2 and routes["in-front"].get("max_hits") != 2


async def test_ctrl_c_quits_from_every_screen_and_q_where_no_text_field_has_the_cursor(
    watched: tuple[RunningSidecar, Path],
) -> None:
    running, _ = watched
    for keys, quits in [
        ((), True),  # the live feed
        (("s", *"lora q"), True),  # the sandbox, its query field holding the cursor: q typed, ctrl+c quits
        (("d",), True),  # the distribution
        (("question_mark",), True),  # the help
    ]:
        app = SidecarTUI([running.admin_url], TOKEN)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press(*keys)
            if keys and keys[0] == "s":
                assert isinstance(app.screen, SandboxScreen) and app.is_running  # the q went into the field
            await pilot.press("ctrl+c")
            await pilot.pause(0.2)
            assert (not app.is_running) is quits, keys
    app = SidecarTUI([running.admin_url], TOKEN)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("d", "q")  # q on a screen without a text field
        await pilot.pause(0.2)
        assert not app.is_running
