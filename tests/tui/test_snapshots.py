"""Snapshots of the main screens, fed by a recorded admin API (events captured from the demo)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from tui.app import SidecarTUI

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
        }
        self._json(docs.get(path, {}))

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
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


def test_live_screen(snap_compare: Any, recorded_admin: str) -> None:
    assert snap_compare(app(recorded_admin), terminal_size=(110, 24), run_before=loaded)


def test_live_screen_at_80_by_24(snap_compare: Any, recorded_admin: str) -> None:
    """The size the README promises: every column and the whole footer fit."""
    assert snap_compare(app(recorded_admin), terminal_size=(80, 24), run_before=loaded)


def after(*keys: str, wait: float) -> Callable[[Pilot[Any]], Awaitable[None]]:
    """Once the recorded events are in, press ``keys`` and let the screen settle."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press(*keys)
        await pilot.pause(wait)

    return run_before


def test_diff_screen(snap_compare: Any, recorded_admin: str) -> None:
    run_before = after("down", "enter", wait=0.3)
    assert snap_compare(app(recorded_admin), terminal_size=(110, 30), run_before=run_before)


def test_tune_screen(snap_compare: Any, recorded_admin: str) -> None:
    run_before = after("t", wait=0.8)
    assert snap_compare(app(recorded_admin), terminal_size=(100, 20), run_before=run_before)


def test_help_screen(snap_compare: Any, recorded_admin: str) -> None:
    run_before = after("question_mark", wait=0.3)
    assert snap_compare(app(recorded_admin), terminal_size=(100, 40), run_before=run_before)
