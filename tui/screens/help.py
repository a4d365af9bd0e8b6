"""Every key of every screen."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

HELP = """[b]rerank-sidecar TUI — keys[/]

[b]Live[/]  (the home screen)
  enter   diff of the selected search        d   score distribution
  t       tune thresholds                    s   sandbox
  /       filter: index:kb status:fallback src:host words       esc  clear the filter
  p       pause the feed                     c   next sidecar (tune, distribution, sandbox act on it)
  ↑/↓     move                               q   quit          ?  this help

[b]Diff[/]
  ←/→     previous / next search             s   the search's query and titles in the sandbox
  esc     back

[b]Distribution[/]
  i       next index                         n   last 100 / 500 / 2000 searches
  esc     back

[b]Tune[/]
  ↑/↓     select a value                     ←/→ adjust it
  enter   type a value                       x   off (no threshold)
  [ / ]   previous / next route              r   reset to the running values
  ctrl+s  save to the config (PUT /_sidecar/config)            esc  back

[b]Sandbox[/]
  ctrl+r  rank the documents                 ctrl+o  load a .txt / .csv[#col] / .jsonl[#field]
  tab     next field                         esc     back

Rows: green applied, yellow fallback, grey bypass. top1: ↺ the reranker changed the first
hit, = it did not. sd: spread of the top scores. Moves: ▲ up, ▼ down, new entered the
page, left left it, cut removed by a threshold.

Press esc or ? to close."""


class HelpScreen(ModalScreen[None]):
    """The key reference."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "close"),
        Binding("question_mark", "app.pop_screen", "close", key_display="?"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(HELP, id="help-text")
