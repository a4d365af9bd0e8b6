"""Every key of every screen, generated from the screens' bindings."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
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


INDENT = " " * 10  # where a key's description starts


def _pairs(keys: list[tuple[str, str]], width: int = 2 * COLUMN + 4) -> list[str]:
    """Two keys a line where the box is wide enough, else one; a key with a long description
    has its line to itself, wrapped under its own start (never back at the box's edge)."""
    if width < 2 * COLUMN + 4:
        out: list[str] = []
        for key, what in keys:
            out += textwrap.wrap(f"  {key:<7} {what}", max(width, 24), subsequent_indent=INDENT)
        return out
    cells = [f"  {key:<7} {what}" for key, what in keys]
    lines: list[str] = []
    left: str | None = None
    for cell in cells:
        if len(cell) >= COLUMN:
            if left is not None:
                lines.append(left)
                left = None
            lines += textwrap.wrap(cell, width, subsequent_indent=INDENT)
        elif left is None:
            left = cell
        else:
            lines.append(f"{left:<{COLUMN}}{cell}")
            left = None
    if left is not None:
        lines.append(left)
    return lines


def help_text(screens: list[type[BaseScreen]], app_bindings: list[BindingType], width: int = 92) -> Text:
    """The help: a section per screen from its bindings, then the keys that work everywhere,
    laid out for ``width`` columns."""
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
        out.append("".join(line + "\n" for line in _pairs(keys, width)))
    legend = "\n".join(textwrap.wrap(" ".join(LEGEND.split()), max(width, 24)))
    out.append(f"\n{legend}\n\nPress esc or ? to close.")
    return out


class HelpScreen(ModalScreen[None]):
    """The key reference."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "close"),
        Binding("question_mark", "app.pop_screen", "close", key_display="?"),
    ]

    def __init__(self, screens: Sequence[type[BaseScreen]]) -> None:
        super().__init__()
        self.screens = list(screens)  # every screen of the app, in the order the help lists them

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(help_text(self.screens, type(self.app).BINDINGS, self._width()), id="help-text")

    def _width(self) -> int:
        """The columns inside the box (96 wide at most, 4 of border and padding)."""
        return min(96, self.app.size.width) - 4

    def on_resize(self) -> None:
        text = help_text(self.screens, type(self.app).BINDINGS, self._width())
        self.query_one("#help-text", Static).update(text)
