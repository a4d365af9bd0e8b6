"""Every key of every screen, generated from the screens' bindings."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.keys import format_key
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.screens.base import BaseScreen

LEGEND = """Rows: green applied, yellow fallback, grey bypass. top1: ↺ the reranker changed the first
hit, = it did not. sd: spread of the top scores. Moves: ▲ up, ▼ down, new entered the
page, left left it, cut removed by a threshold."""

COLUMN = 44  # two keys a line


def _pairs(keys: list[tuple[str, str]]) -> list[str]:
    """Two keys a line; a key with a long description has its line to itself."""
    cells = [f"  {key:<7} {what}" for key, what in keys]
    lines: list[str] = []
    left: str | None = None
    for cell in cells:
        if len(cell) >= COLUMN:
            if left is not None:
                lines.append(left)
                left = None
            lines.append(cell)
        elif left is None:
            left = cell
        else:
            lines.append(f"{left:<{COLUMN}}{cell}")
            left = None
    if left is not None:
        lines.append(left)
    return lines


def help_text(screens: list[type[BaseScreen]], app_bindings: list[BindingType]) -> Text:
    """The help: a section per screen from its bindings, then the keys that work everywhere."""
    everywhere = [
        (b.key_display or format_key(b.key), b.tooltip or b.description)
        for b in app_bindings
        if isinstance(b, Binding)
    ]
    sections = [(s.HELP_NAME, s.keys()) for s in screens] + [("Everywhere", everywhere)]
    out = Text("rerank-sidecar TUI — keys\n", style="bold")
    for name, keys in sections:
        out.append("\n")
        out.append(name + "\n", style="bold")
        out.append("".join(line + "\n" for line in _pairs(keys)))
    out.append(f"\n{LEGEND}\n\nPress esc or ? to close.")
    return out


class HelpScreen(ModalScreen[None]):
    """The key reference."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "close"),
        Binding("question_mark", "app.pop_screen", "close", key_display="?"),
    ]

    def compose(self) -> ComposeResult:
        from tui.screens.diff import DiffScreen
        from tui.screens.distribution import DistributionScreen
        from tui.screens.experiments import ExperimentsScreen
        from tui.screens.live import LiveScreen
        from tui.screens.sandbox import SandboxScreen
        from tui.screens.tune import TuneScreen

        screens: list[type[BaseScreen]] = [
            LiveScreen,
            DiffScreen,
            DistributionScreen,
            TuneScreen,
            SandboxScreen,
            ExperimentsScreen,
        ]
        with VerticalScroll(id="help-box"):
            yield Static(help_text(screens, type(self.app).BINDINGS), id="help-text")
