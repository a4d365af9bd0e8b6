"""Adjust a route's thresholds with a live preview over recorded searches; save to the config."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.reactive import var
from textual.widgets import DataTable, Footer, Input, Static

from sidecar.config import AUTO_ALPHA, LINEAR_ALPHA
from tui.client import AdminError
from tui.screens.base import BaseScreen

# key, step, lowest, highest, value when switched on from off
FIELDS: list[tuple[str, float, float | None, float | None, float]] = [
    ("min_score", 0.05, None, None, 0.0),
    ("relative_to_top", 0.05, 0.05, 1.0, 0.5),
    ("max_drop", 0.05, 0.05, None, 0.2),
    ("max_hits", 1, 1, None, 10),
    ("fusion", 0, None, None, 0),
    ("fusion_alpha", 0.05, 0.0, 1.0, 0.5),
]
FUSIONS = ("auto", "replace", "linear", "rrf")
OPTIONAL = frozenset({"min_score", "relative_to_top", "max_drop", "max_hits"})


def _show(value: Any, key: str | None = None) -> str:
    if value is None:
        return "default" if key == "fusion_alpha" else "off"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _share(value: Any) -> str:
    return f"{value * 100:5.1f}%" if isinstance(value, (int, float)) else "    –"


class TuneScreen(BaseScreen):
    """Thresholds of one route: ←/→ adjust, enter types, ctrl+s saves through the admin API.
    A new route or new values redraw the table and ask for a preview."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "adjust(-1)", "less", show=False, priority=True, tooltip="adjust the value: less"),
        Binding("right", "adjust(1)", "more", show=False, priority=True, tooltip="adjust the value: more"),
        Binding("enter", "edit", "edit", priority=True, tooltip="type a value"),
        Binding("x", "off", "off", tooltip="off (no threshold)"),
        Binding("left_square_bracket", "route(-1)", "prev route", key_display="[", tooltip="previous route"),
        Binding("right_square_bracket", "route(1)", "next route", key_display="]"),
        Binding("r", "reset", "reset", tooltip="reset to the running values"),
        Binding("ctrl+s", "save", "save", tooltip="save to the config (PUT /_sidecar/config)"),
    ]
    HELP_NAME = "Tune"
    WIDGET_KEYS: ClassVar[list[tuple[str, str]]] = [("↑/↓", "select a value")]

    AUTO_FOCUS = "#tune-fields"

    config: var[dict[str, Any]] = var(dict, init=False)  # the sidecar's running config
    route: var[int] = var(0, init=False)  # the route tuned, by position
    values: var[dict[str, Any]] = var(dict, init=False)  # the values shown as new

    def __init__(self, limit: int = 500) -> None:
        super().__init__()
        self.limit = limit
        self.status = ""

    def compose(self) -> ComposeResult:
        yield Static(id="tune-title")
        with Horizontal(id="tune-body"):
            yield DataTable(id="tune-fields", cursor_type="row")
            with Vertical(id="tune-side"):
                yield Static(id="tune-preview")
        yield Input(id="tune-input", placeholder="value, or off")
        yield Static(id="tune-status")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#tune-fields", DataTable)
        table.add_column("threshold", key="key")
        table.add_column("running", key="running")
        table.add_column("new", key="new")
        self.query_one("#tune-input", Input).display = False
        self.load()

    @work(exclusive=True, group="tune-load")
    async def load(self) -> None:
        try:
            self.config = await self.tui.client.config()
        except AdminError as e:
            self.set_status(f"cannot read the config: {e}", error=True)
            return
        self.set_reactive(TuneScreen.route, min(self.route, max(0, len(self.config.get("routes") or []) - 1)))
        self.action_reset()

    def watch_route(self) -> None:
        self.action_reset()

    def watch_values(self) -> None:
        self.render_table()
        self.preview()

    def running(self) -> dict[str, Any]:
        routes = self.config.get("routes") or []
        return routes[self.route] if routes else {}

    def changes(self) -> dict[str, Any]:
        """The values that differ from the running route."""
        running = self.running()
        return {k: v for k, v in self.values.items() if running.get(k) != v}

    def render_table(self) -> None:
        table = self.query_one("#tune-fields", DataTable)
        row = table.cursor_row
        table.clear()
        running = self.running()
        for key, *_ in FIELDS:
            new = self.values.get(key)
            style = "bold yellow" if running.get(key) != new else ""
            table.add_row(key, _show(running.get(key), key), Text(_show(new, key), style=style), key=key)
        table.move_cursor(row=max(0, row), animate=False)
        routes = self.config.get("routes") or []
        indices = ", ".join(running.get("indices", [])) if running else "–"
        self.query_one("#tune-title", Static).update(
            f"[b]Tune ▸[/] route {self.route + 1}/{len(routes)} ({indices}),"
            f" model {running.get('model', '–')}, {self.tui.client.name}"
        )

    def set_status(self, text: str, *, error: bool = False) -> None:
        self.status = text
        self.show("#tune-status", Text(text, style="red" if error else "green"))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # while a value is typed, ←/→ move the text cursor and enter submits it
        if action in ("adjust", "edit") and self.query_one("#tune-input", Input).has_focus:
            return False
        return True

    def field(self) -> tuple[str, float, float | None, float | None, float]:
        return FIELDS[self.query_one("#tune-fields", DataTable).cursor_row]

    def action_adjust(self, direction: int) -> None:
        key, step, lo, hi, start = self.field()
        value = self.values.get(key)
        if key == "fusion":
            value = FUSIONS[(FUSIONS.index(value or "auto") + direction) % len(FUSIONS)]
        elif value is None and key == "fusion_alpha":  # the fusion's own default, then a step
            value = round(
                (AUTO_ALPHA if self.values.get("fusion", "auto") == "auto" else LINEAR_ALPHA)
                + direction * step,
                4,
            )
        elif value is None:
            value = start
        else:
            value = value + direction * step
            value = max(lo, value) if lo is not None else value
            value = min(hi, value) if hi is not None else value
            value = int(value) if key == "max_hits" else round(value, 4)
        self.set_status("")
        self.values = {**self.values, key: value}

    def action_off(self) -> None:
        key = self.field()[0]
        if key in OPTIONAL:
            self.values = {**self.values, key: None}

    def action_edit(self) -> None:
        box = self.query_one("#tune-input", Input)
        key = self.field()[0]
        box.display = True
        box.value = _show(self.values.get(key))
        box.placeholder = f"{key}: a number, or off"
        box.focus()

    def on_input_submitted(self, message: Input.Submitted) -> None:
        key = self.field()[0]
        text = message.value.strip()
        message.input.display = False
        self.query_one("#tune-fields", DataTable).focus()
        off = ", or off" if key in OPTIONAL else ""
        if text.lower() in ("off", "none", "") and key in OPTIONAL:
            value: Any = None
        elif key == "fusion":
            if text not in FUSIONS:
                self.set_status(f"fusion: one of {', '.join(FUSIONS)}, not {text!r}", error=True)
                return
            value = text
        else:
            try:
                value = int(text) if key == "max_hits" else float(text)
            except ValueError:
                kind = "a whole number" if key == "max_hits" else "a number"
                self.set_status(f"{key}: {kind}{off}, not {text!r}", error=True)
                return
        self.set_status("")  # a valid value clears the last complaint
        self.values = {**self.values, key: value}

    def action_route(self, delta: int) -> None:
        routes = self.config.get("routes") or []
        if routes:
            self.route = (self.route + delta) % len(routes)

    def action_reset(self) -> None:
        running = self.running()
        self.set_reactive(TuneScreen.values, {key: running.get(key) for key, *_ in FIELDS})
        self.mutate_reactive(TuneScreen.values)  # redraw even when equal (a new route, a save)

    @work(exclusive=True, group="tune-preview")
    async def preview(self) -> None:
        await asyncio.sleep(0.1)  # keys held down: only the last value is previewed
        if not self.config.get("routes"):
            self._show_preview("no routes")
            return
        try:
            result = await self.tui.client.preview(
                self.running().get("name") or self.route, self.changes(), self.limit
            )
        except AdminError as e:
            self._show_preview(Text(f"preview: {e}", style="red"))
            return
        cur, new = result["current"], result["proposed"]
        rows = [
            f"[b]preview: last {new['searches']} reranked searches[/]",
            "                 running      new",
            f"hits cut        {_share(cur['hits_cut'])}   {_share(new['hits_cut'])}",
            f"empty results   {_share(cur['empty_results'])}   {_share(new['empty_results'])}",
            f"top-1 changed   {_share(cur['top1_changed'])}   {_share(new['top1_changed'])}",
        ]
        self._show_preview("\n".join(rows))

    def _show_preview(self, content: str | Text) -> None:
        self.show("#tune-preview", content)

    @work(exclusive=True, group="tune-save")
    async def action_save(self) -> None:
        changes = self.changes()
        if not changes:
            self.set_status("nothing to save: the values are the running ones")
            return
        try:
            config = await self.tui.client.config()
            name = self.running().get("name")
            # by name: the routes may have been reordered (or this one removed) since the screen
            # read them, and a threshold must not land on another route
            routes = config.get("routes") or []
            mine = next((r for r in routes if r.get("name") == name), None)
            if mine is None:
                gone = f"not saved: the sidecar has no route {name!r} any more (esc, then t reads them anew)"
                self.set_status(gone, error=True)
                return
            mine.update(changes)
            result = await self.tui.client.put_config(config)
        except AdminError as e:
            self.set_status(f"not saved: {e}", error=True)
            return
        self.config = result["config"]
        where = (
            result.get("persisted") or "memory only (the sidecar was started without a writable config file)"
        )
        self.set_status(f"saved {', '.join(f'{k}={_show(v)}' for k, v in changes.items())} → {where}")
        self.mutate_reactive(TuneScreen.values)
