"""The home screen: searches as they happen, the sidecars' figures, a latency sparkline."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.reactive import var
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Input, Sparkline, Static

from sidecar.events.event import SearchEvent
from tui.feed import Filter, feed_row
from tui.screens.base import BaseScreen

COLUMNS = ("time", "src", "index", "query", "status", "top1", "top", "sd", "ms", "notes")
# the widest each column other than the query and the notes gets
OTHER_WIDTHS = {
    "time": 8,
    "src": 15,
    "index": 8,
    "status": 8,
    "top1": 4,
    "top": 4,
    "sd": 4,
    "ms": 5,
}
STATUS_STYLE = {"applied": "green", "fallback": "yellow", "bypass": "grey50"}


def _ms(value: Any) -> str:
    return f"{value:.0f}" if isinstance(value, (int, float)) else "–"


def _pct(value: Any) -> str:
    return f"{value * 100:.1f}%" if isinstance(value, (int, float)) else "–"


def figures_line(name: str | None, stats: dict[str, Any]) -> str:
    """QPS, p50 by stage, p95, fallback and cache rates, queue depth, GPU memory."""
    lat = stats.get("latency_ms") or {}
    total, up, queue, model = (lat.get(k) or {} for k in ("total", "upstream", "queue", "model"))
    models = stats.get("models") or {}
    hit_rates = [m["cache_hit_rate"] for m in models.values() if m.get("cache_hit_rate") is not None]
    depth = sum(m.get("queue_depth") or 0 for m in models.values())
    gpu = stats.get("gpu_memory")
    parts = [
        f"QPS {stats.get('qps', 0):.1f}",
        f"p50 {_ms(total.get('p50'))} ms (os {_ms(up.get('p50'))} · queue {_ms(queue.get('p50'))}"
        f" · model {_ms(model.get('p50'))})",
        f"p95 {_ms(total.get('p95'))} ms",
        f"fallback {_pct(stats.get('fallback_rate'))}",
        f"cache {_pct(max(hit_rates) if hit_rates else None)}",
        f"queue {depth}",
    ]
    if gpu:
        parts.append(f"GPU {gpu['used_gib']:.1f}/{gpu['total_gib']:.0f} GiB")
    for route, w in (stats.get("warmup") or {}).items():  # documents embedded at start
        if w.get("state") in ("reading", "scoring"):
            parts.append(f"warm-up {route} {w.get('documents', 0)}/{w.get('total') or '?'}")
        elif w.get("state") == "failed":
            parts.append(f"warm-up {route} failed")
    if "config_version" in stats:  # a fleet's shared config: the version this sidecar runs
        version = stats["config_version"]
        parts.append(
            f"cfg v{version if version is not None else '?'}" + (" ✗" if stats.get("config_error") else "")
        )
    return ("" if name is None else f"{name}  ") + "   ".join(parts)


def fit(line: str, width: int) -> str:
    """A figures line broken between its figures (never inside one) to lines of ``width``."""
    out: list[str] = []
    for part in line.split("   "):
        if out and len(out[-1]) + 3 + len(part) <= width:
            out[-1] += "   " + part
        else:
            out.append(part)
    return "\n".join(out)


def fleet_line(replicas: list[dict[str, Any]], fleet: dict[str, Any] | None) -> str:
    """The fleet's totals: its own figures where the sidecars share an events index, else the
    replicas' searches, QPS and fallbacks added up (percentiles do not add up: not shown)."""
    if fleet is not None:
        return "fleet  " + figures_line(None, fleet)
    searches = sum(s.get("searches") or 0 for s in replicas)
    fallbacks = sum((s.get("fallback_rate") or 0) * (s.get("searches") or 0) for s in replicas)
    versions = {s.get("config_version") for s in replicas if "config_version" in s}
    parts = [
        f"QPS {sum(s.get('qps') or 0 for s in replicas):.1f}",
        f"searches {searches}",
        f"fallback {_pct(fallbacks / searches if searches else None)}",
        f"replicas {len(replicas)}",
    ]
    if versions:
        parts.append(
            "cfg "
            + (
                "same"
                if len(versions) == 1
                else "differs: " + ",".join(f"v{v}" for v in sorted(versions, key=str))
            )
        )
    return "fleet  " + "   ".join(parts)


class LiveScreen(BaseScreen):
    """Feed, figures and sparkline; enter opens the diff of the selected search. It redraws when
    the app's state it watches changes (events, figures, connections, the target sidecar) or
    its own does (pause, filter), at most every ``REDRAW_S``, and once a second for the clock."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "diff", "diff", priority=True, tooltip="diff of the selected search"),
        Binding("d", "distribution", "scores", tooltip="score distribution"),
        Binding("t", "tune", "tune", tooltip="tune thresholds"),
        Binding("s", "sandbox", "sandbox"),
        Binding("x", "experiments", "experiments", tooltip="online experiments and their clicks"),
        Binding(
            "slash",
            "filter",
            "filter",
            key_display="/",
            tooltip="filter: index:kb status:fallback src:host words",
        ),
        Binding("escape", "clear_filter", "clear filter", show=False),
        Binding("p", "pause", "pause", show=False, tooltip="pause the feed"),
        Binding(
            "c",
            "cycle_target",
            "next sidecar",
            show=False,
            tooltip="next sidecar (tune, distribution, sandbox)",
        ),
    ]
    HELP_NAME = "Live  (the home screen)"
    WIDGET_KEYS: ClassVar[list[tuple[str, str]]] = [("↑/↓", "move")]
    REDRAW_S = 0.25

    AUTO_FOCUS = "#live-feed"

    paused: var[bool] = var(False, init=False)
    filter: var[Filter] = var(Filter, init=False)

    def __init__(self) -> None:
        super().__init__()
        self.shown: list[tuple[str, SearchEvent]] = []
        self._pending: Timer | None = None
        self._feed_changed = True

    def compose(self) -> ComposeResult:
        yield Static(id="live-title")
        yield Static(id="live-figures")
        with Horizontal(id="live-spark-row"):
            yield Static("latency ", id="live-spark-label")
            yield Sparkline([], id="live-spark")
        yield Input(placeholder="filter: index:kb status:fallback src:host words", id="live-filter")
        yield DataTable(id="live-feed", cursor_type="row", zebra_stripes=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#live-feed", DataTable)
        for column in self._columns():
            table.add_column(column, key=column)
        self.query_one("#live-filter", Input).display = False
        self.watch(self.app, "received", lambda: self._changed(feed=True), init=False)
        for state in ("stats", "connected", "target", "fleet"):
            self.watch(self.app, state, lambda: self._changed(), init=False)
        self.set_interval(1.0, self._header)  # the clock
        self._redraw()

    def watch_paused(self) -> None:
        self._changed(feed=True)

    def watch_filter(self) -> None:
        self._changed(feed=True)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # while the filter is typed, keys are text and enter submits it
        if self.query_one("#live-filter", Input).has_focus and action != "clear_filter":
            return False
        return True

    def _columns(self) -> list[str]:
        return [c for c in COLUMNS if c != "src" or len(self.tui.clients) > 1]

    def _changed(self, *, feed: bool = False) -> None:
        """Redraw soon: a burst of events is drawn once."""
        self._feed_changed = self._feed_changed or feed
        if self._pending is None:
            self._pending = self.set_timer(self.REDRAW_S, self._redraw)

    def _redraw(self) -> None:
        self._pending = None
        feed, self._feed_changed = self._feed_changed, False
        self._header()
        if feed and not self.paused:
            self._table()

    def _header(self) -> None:
        app = self.tui
        sources = []
        for i, c in enumerate(app.clients):
            ok, detail = app.connected.get(c.name, (False, ""))
            mark = "[green]●[/]" if ok else f"[red]○ {detail[:40] or 'disconnected'}[/]"
            target = "▸" if i == app.target and len(app.clients) > 1 else ""
            sources.append(f"{target}{c.name} {mark}")
        clock = time.strftime("%H:%M:%S", time.localtime(app.clock()))
        state = "  [b]paused[/]" if self.paused else ""
        self.query_one("#live-title", Static).update(
            f"[b]rerank-sidecar ▸ Live[/]{state}    {'  '.join(sources)}    {clock}"
        )
        many = len(app.clients) > 1
        lines = [
            figures_line(c.name if many else None, app.stats[c.name])
            for c in app.clients
            if c.name in app.stats
        ]
        if many and lines:
            lines.append(
                fleet_line([app.stats[c.name] for c in app.clients if c.name in app.stats], app.fleet)
            )
        width = max(20, self.app.size.width - 2)  # inside the padding
        shown = "\n".join(fit(line, width) for line in lines)
        self.query_one("#live-figures", Static).update(Text(shown or "waiting for figures…"))
        recent = [e.timings.total_ms or 0.0 for _, e in app.recent()[:60]]
        self.query_one("#live-spark", Sparkline).data = list(reversed(recent)) or [0.0]

    def _table(self) -> None:
        table = self.query_one("#live-feed", DataTable)
        selected = None
        if table.row_count and 0 <= table.cursor_row < len(self.shown):
            source, event = self.shown[table.cursor_row]
            selected = f"{source}:{event.id}"
        self.shown = [(s, e) for s, e in self.tui.recent() if self.filter(s, e)][:500]
        table.clear()
        columns = self._columns()
        # the query and the notes take what the other columns leave (the query up to 60, the
        # notes the rest): every column fits an 80-column terminal, and a wide one shows more
        others = sum(OTHER_WIDTHS.get(c, 8) + 2 for c in columns if c not in ("query", "notes"))
        free = self.app.size.width - others - 4 - 2  # their cells' padding, the scrollbar
        query_width = max(12, min(60, free - 14))
        notes_width = max(8, free - query_width)
        for source, event in self.shown:
            row = feed_row(source, event, query_width, notes_width)
            style = STATUS_STYLE.get(row["status"], "")
            table.add_row(*(Text(row[c], style=style) for c in columns), key=f"{source}:{event.id}")
        if selected is not None:
            try:
                table.move_cursor(row=table.get_row_index(selected), animate=False)
            except Exception:  # the row scrolled out of the history
                table.move_cursor(row=0, animate=False)

    def selected(self) -> int | None:
        """The index in ``shown`` of the row under the cursor."""
        table = self.query_one("#live-feed", DataTable)
        return table.cursor_row if self.shown and 0 <= table.cursor_row < len(self.shown) else None

    def action_diff(self) -> None:
        i = self.selected()
        if i is not None:
            self.tui.open("diff", feed=list(self.shown), index=i)

    def action_distribution(self) -> None:
        self.tui.open("distribution")

    def action_tune(self) -> None:
        self.tui.open("tune")

    def action_experiments(self) -> None:
        self.tui.open("experiments")

    def action_sandbox(self) -> None:
        self.tui.open("sandbox")

    def action_filter(self) -> None:
        box = self.query_one("#live-filter", Input)
        box.display = True
        box.focus()

    def on_input_submitted(self, message: Input.Submitted) -> None:
        if message.input.id == "live-filter":
            self.filter = Filter.parse(message.value)
            message.input.display = bool(message.value)
            self.query_one("#live-feed", DataTable).focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#live-filter", Input)
        box.value = ""
        box.display = False
        self.filter = Filter()
        self.query_one("#live-feed", DataTable).focus()

    def action_pause(self) -> None:
        self.paused = not self.paused

    def action_cycle_target(self) -> None:
        self.tui.target = (self.tui.target + 1) % len(self.tui.clients)
