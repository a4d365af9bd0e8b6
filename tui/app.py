"""``rerank-sidecar tui``: watch and tune one or more sidecars through their admin API."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.reactive import var

from sidecar.events.event import SearchEvent
from tui.client import AdminClient, AdminError
from tui.messages import ConnectionChanged, EventReceived, StatsUpdated
from tui.screens import SCREENS
from tui.screens.help import HelpScreen

BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 10.0)


class SidecarTUI(App[None]):
    """The app: one live feed merged from every sidecar, screens for diff, distribution, tune, sandbox."""

    CSS_PATH = "app.tcss"
    TITLE = "rerank-sidecar"
    ENABLE_COMMAND_PALETTE = False  # every action has its key: the footer keeps its room for them
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        # from every screen, a text field too (Textual's own ctrl+c only says to press ctrl+q)
        Binding("ctrl+c", "quit", "quit", key_display="ctrl+c", show=False, priority=True),
        Binding("question_mark", "help", "help", key_display="?", tooltip="this help"),
    ]

    # State the screens watch (``self.watch(self.app, ...)``); each change assigns a new value.
    received: var[int] = var(0)  # events taken into ``events`` so far
    stats: var[dict[str, dict[str, Any]]] = var(dict)  # each sidecar's figures of the last minute
    connected: var[dict[str, tuple[bool, str]]] = var(dict)  # each sidecar: reachable, and why not
    target: var[int] = var(0)  # the sidecar that tune, distribution and sandbox act on
    fleet: var[dict[str, Any] | None] = var(None)  # with several sidecars: the fleet's figures, if kept

    def __init__(
        self,
        admin_urls: Sequence[str],
        token: str | None = None,
        *,
        history: int = 2000,
        clock: Callable[[], float] = time.time,
        stats_interval_s: float = 1.0,
    ) -> None:
        super().__init__()
        self.clients = [AdminClient(u, token) for u in admin_urls]
        self.history = history
        self.clock = clock
        self.stats_interval_s = stats_interval_s
        # newest last; keyed by (source, event id) so a reconnect's catch-up does not repeat rows
        self.events: OrderedDict[tuple[str, str], SearchEvent] = OrderedDict()
        self.connected = {c.name: (False, "connecting") for c in self.clients}

    @property
    def client(self) -> AdminClient:
        """The sidecar the tuning screens act on."""
        return self.clients[self.target]

    def on_mount(self) -> None:
        self.open("live")
        for client in self.clients:
            self.run_worker(self._follow(client), group="follow", name=f"follow {client.name}")
            self.run_worker(self._poll(client), group="poll", name=f"stats {client.name}")

    async def _follow(self, client: AdminClient) -> None:
        """Catch up on recent events, then follow the stream; reconnect with backoff."""
        failures = 0
        while True:
            try:
                for event in reversed(await client.events(limit=min(self.history, 500))):
                    self.post_message(EventReceived(client.name, event))
                self.post_message(ConnectionChanged(client.name, True))
                failures = 0
                async for event in client.stream():
                    self.post_message(EventReceived(client.name, event))
                raise AdminError("the event stream ended")
            except AdminError as e:
                self.post_message(ConnectionChanged(client.name, False, str(e)))
                await asyncio.sleep(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])
                failures += 1

    async def _poll(self, client: AdminClient) -> None:
        # with several sidecars, the first one also asks for the fleet's figures (over the events
        # index they all write) until it says it has none
        fleet = len(self.clients) > 1 and client is self.clients[0]
        while True:
            try:
                self.post_message(StatsUpdated(client.name, await client.stats()))
            except AdminError:
                pass  # the follower reports the connection
            if fleet:
                try:
                    self.fleet = await client.stats("fleet")
                except AdminError as e:
                    fleet = "events.index" not in str(e)  # no shared index: the TUI adds them up
            await asyncio.sleep(self.stats_interval_s)

    def on_event_received(self, message: EventReceived) -> None:
        key = (message.source, message.event.id)
        if key in self.events:
            return
        self.events[key] = message.event
        while len(self.events) > self.history:
            self.events.popitem(last=False)
        self.received += 1

    def on_stats_updated(self, message: StatsUpdated) -> None:
        self.stats = {**self.stats, message.source: message.stats}

    def on_connection_changed(self, message: ConnectionChanged) -> None:
        self.connected = {**self.connected, message.source: (message.connected, message.detail)}

    def recent(self) -> list[tuple[str, SearchEvent]]:
        """Every stored event, newest first, with its source."""
        return [(src, e) for (src, _), e in reversed(self.events.items())]

    def action_help(self) -> None:
        self.push_screen(HelpScreen(list(SCREENS.values())))

    def open(self, name: str, **kwargs: Any) -> None:
        """Push the screen of that name (a key of ``SCREENS``), made with ``kwargs``."""
        self.push_screen(SCREENS[name](**kwargs))

    async def on_unmount(self) -> None:
        for client in self.clients:
            await client.aclose()


def run(admin_urls: Sequence[str], token: str | None) -> None:
    """Run the TUI until the user quits."""
    SidecarTUI(admin_urls, token).run()
