"""What every screen shares: the app it belongs to, esc to go back, a title line and the
footer, and its part of the help, generated from its bindings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, cast

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.keys import format_key
from textual.screen import Screen
from textual.widgets import Static

from sidecar.events.event import SearchEvent
from tui.client import AdminClient


class Host(Protocol):
    """What a screen asks of the app: the sidecars, the one it acts on, the events, and the
    other screens by name (the app holds ``SCREENS``; a screen never imports another)."""

    clients: Sequence[AdminClient]
    target: int
    stats: dict[str, dict[str, Any]]
    connected: dict[str, tuple[bool, str]]
    fleet: dict[str, Any] | None
    clock: Callable[[], float]

    @property
    def client(self) -> AdminClient:
        """The sidecar the tuning screens act on."""
        ...

    def recent(self) -> list[tuple[str, SearchEvent]]:
        """Every stored event, newest first, with its source."""
        ...

    def open(self, name: str, **kwargs: Any) -> None:
        """Push the screen of that name, made with ``kwargs``."""
        ...


class BaseScreen(Screen[None]):
    """A screen of the TUI. Subclasses name themselves for the help (``HELP_NAME``) and list the
    keys their widgets handle (``WIDGET_KEYS``: a table's ↑/↓, tab between fields)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "back"),
    ]
    HELP_NAME: ClassVar[str] = ""
    WIDGET_KEYS: ClassVar[list[tuple[str, str]]] = []

    @property
    def tui(self) -> Host:
        """The app, with its sidecars, events and figures."""
        return cast(Host, self.app)

    def show(self, selector: str, content: str | Text) -> None:
        """Put ``content`` in a Static; nothing when the screen has closed meanwhile (a worker's
        answer can arrive after that)."""
        try:
            self.query_one(selector, Static).update(content)
        except NoMatches:
            return

    @classmethod
    def keys(cls) -> list[tuple[str, str]]:
        """(key, what it does) for each binding of this screen and of the screens it extends,
        its own first, then the keys its widgets handle."""
        seen: dict[str, str] = {}
        for klass in cls.__mro__:
            if not (isinstance(klass, type) and issubclass(klass, BaseScreen)):
                continue
            for b in klass.__dict__.get("BINDINGS", []):
                if not isinstance(b, Binding):
                    continue
                key = b.key_display or ("enter" if b.key == "enter" else format_key(b.key))
                seen.setdefault(key, b.tooltip or b.description)
        return [*seen.items(), *cls.WIDGET_KEYS]
