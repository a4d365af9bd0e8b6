"""Snapshots of the main screens, fed by a recorded admin API (events captured from the demo)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from textual.pilot import Pilot

from tui.app import SidecarTUI
from tui.screens import sandbox

RECORDED = json.loads((Path(__file__).with_name("recorded.json")).read_text(encoding="utf-8"))
CLOCK = 1795600005.0
RECORDED_PORT = 39301  # a few seconds after the recorded events


class Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
    stopping = False


class Recorded(BaseHTTPRequestHandler):
    """The admin API of the demo sidecar as it was recorded; the event stream stays quiet."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, doc: Any) -> None:
        body = json.dumps(doc, ensure_ascii=False).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/_sidecar/events/stream":
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            self.wfile.write(b": connected\n\n")
            self.wfile.flush()
            while not self.server.stopping:  # type: ignore[attr-defined]
                time.sleep(0.05)
            return
        docs = {
            "/_sidecar/events": {"events": RECORDED["events"]},
            "/_sidecar/stats": RECORDED["stats"],
            "/_sidecar/config": RECORDED["config"],
            "/_sidecar/experiments": {"experiments": [], "unmatched_clicks": 0},
        }
        self._json(docs.get(path, {}))

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        if self.path.startswith("/_sidecar/rerank"):  # words shared with the query: a fixed ranking
            words = set(body["query"].lower().split())
            scores = [
                round(len(words & set(d.lower().split())) / (len(words) + 1), 4) for d in body["documents"]
            ]
            ranking = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
            self._json(
                {
                    "model": "minilm",
                    "scores": scores,
                    "ranking": [{"index": i, "score": scores[i]} for i in ranking],
                    "took_ms": 12.0,
                }
            )
            return
        self._json(RECORDED["preview"])


@pytest.fixture
def recorded_admin(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    # a fixed port: the screens show the sidecar's address
    server = Server(("127.0.0.1", RECORDED_PORT), Recorded)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.stopping = True
    server.shutdown()
    server.server_close()
    monkeypatch.delenv("TZ")
    time.tzset()


def app(url: str) -> SidecarTUI:
    return SidecarTUI([url], clock=lambda: CLOCK, stats_interval_s=3600)


async def loaded(pilot: Pilot[Any]) -> None:
    deadline = time.monotonic() + 10
    while len(pilot.app.events) < len(RECORDED["events"]) and time.monotonic() < deadline:  # type: ignore[attr-defined]
        await pilot.pause(0.05)
    await pilot.pause(0.6)


def after(*keys: str, wait: float) -> Callable[[Pilot[Any]], Awaitable[None]]:
    """Once the recorded events are in, press ``keys`` and let the screen settle."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press(*keys)
        await pilot.pause(wait)

    return run_before


def typed(text: str) -> list[str]:
    """The keys that type ``text``."""
    names = {" ": "space", "\n": "enter", "-": "minus", ",": "comma", ".": "full_stop"}
    return [names.get(c, c) for c in text]


SANDBOX = [
    "s",
    *typed("lora rank"),
    "tab",
    "tab",
    *typed("Choosing a LoRA rank for fine tuning jobs on one GPU with eight gigabytes of memory\n"),
    *typed("Java has eight primitive types and a long list of boxed counterparts\n"),
    *typed("Which rank should a LoRA adapter use"),
    "ctrl+r",
]
SCREENS = {
    "live": [],
    "diff": ["down", "enter"],
    "distribution": ["d"],
    "tune": ["t"],
    "sandbox": SANDBOX,
    "experiments": ["x"],
    "help": ["question_mark"],
}


@pytest.mark.parametrize("size", [(80, 24), (160, 45)], ids=["80x24", "160x45"])
@pytest.mark.parametrize("screen", list(SCREENS))
def test_every_screen_at_the_smallest_and_a_wide_terminal(
    snap_compare: Any,
    recorded_admin: str,
    monkeypatch: pytest.MonkeyPatch,
    screen: str,
    size: tuple[int, int],
) -> None:
    """Every screen with real content (the demo's recorded searches) at 80x24, the size the
    README promises, and at 160x45: nothing cut that the width has room for."""
    if screen == "sandbox":  # the round trip it shows, made the same on every run
        monkeypatch.setattr(sandbox, "time", SimpleNamespace(perf_counter=lambda: 0.0))
    run_before = after(*SCREENS[screen], wait=1.0)
    if screen == "sandbox":
        run_before = ranked
    assert snap_compare(app(recorded_admin), terminal_size=size, run_before=run_before)


async def ranked(pilot: Pilot[Any]) -> None:
    """The sandbox once its ranking is in, the focus on it (no text cursor to blink)."""
    await after(*SANDBOX, wait=0.2)(pilot)
    table = pilot.app.screen.query_one("#sandbox-ranking")
    deadline = time.monotonic() + 10
    while table.row_count < 3 and time.monotonic() < deadline:  # type: ignore[attr-defined]
        await pilot.pause(0.05)
    table.focus()
    await pilot.pause(0.5)
