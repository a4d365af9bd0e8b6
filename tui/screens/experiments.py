"""Online experiments of the target sidecar, live: one line per experiment with its win rate
(or click-through difference) and interval drawn as a bar; below, the selected experiment's
latest searches, and the selected search's list: which arm placed each hit, which got clicks."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.reactive import var
from textual.widgets import DataTable, Footer, Static

from tui.client import AdminError
from tui.screens.base import BaseScreen

BAR = 17  # characters of the bar


def bar(value: float | None, low: float | None, high: float | None, lo: float, hi: float) -> Text:
    """``value`` and its interval on a scale from ``lo`` to ``hi``: ``─`` over the interval,
    ``●`` at the value, ``│`` at the middle of the scale (no effect)."""
    cells = [" "] * BAR
    styles = [""] * BAR

    def at(x: float) -> int:
        return max(0, min(BAR - 1, round((x - lo) / (hi - lo) * (BAR - 1))))

    cells[at((lo + hi) / 2)] = "│"
    if value is not None and low is not None and high is not None:
        better = low > (lo + hi) / 2
        worse = high < (lo + hi) / 2
        colour = "green" if better else "red" if worse else "yellow"
        for i in range(at(low), at(high) + 1):
            cells[i], styles[i] = ("─" if cells[i] == " " else cells[i]), colour
        cells[at(value)], styles[at(value)] = "●", f"bold {colour}"
    out = Text("[")
    for c, s in zip(cells, styles, strict=True):
        out.append(c, style=s)
    out.append("]")
    return out


def _num(x: float | None, fmt: str = ".3f") -> str:
    return "–" if x is None else format(x, fmt)


def experiment_row(e: dict[str, Any]) -> list[str | Text]:
    """The cells of one experiment's line."""
    interval = e.get("interval") or [None, None]
    if e["mode"] == "ab":
        arms = e["arms"]
        outcome = f"CTR {_num(arms['control']['ctr'], '.2f')}/{_num(arms['treatment']['ctr'], '.2f')}"
        drawn = bar(e["difference"], interval[0], interval[1], -0.25, 0.25)
        effect = f"{e['difference']:+.3f}" if e["difference"] is not None else "–"
    else:
        outcome = f"{e['wins']}/{e['losses']}/{e['ties']}"
        drawn = bar(e["win_rate"], interval[0], interval[1], 0.0, 1.0)
        effect = _num(e["win_rate"])
    if e["state"] == "stopped":
        verdict = Text("stopped", style="bold red")
    elif e["significant"]:
        verdict = Text(
            f"{e['better']} better", style="bold green" if e["better"] == "treatment" else "bold red"
        )
    elif e["queries_needed"] is not None:
        verdict = Text(f"~{e['queries_needed']} more")
    else:
        verdict = Text("no effect yet", style="dim")
    queries = f"{e['queries']}" + (f" (+{e['unidentified']})" if e["unidentified"] else "")
    p = _num(e["p_value"], ".4f")
    return [e["name"], verdict, effect, drawn, p, queries, outcome, e["mode"]]


def impression_list(imp: dict[str, Any]) -> Text:
    """A search's page as served: position, the arm that placed the hit, a click mark, the id."""
    out = Text()
    out.append(f"{imp.get('query') or '(query not kept)'}\n", style="bold")
    out.append(f"served {imp['served']}, outcome {imp.get('outcome') or 'no click'}\n\n")
    credit = imp.get("credit") or []
    for p, doc in enumerate(imp["ids"]):
        arm = credit[p] if p < len(credit) else imp["served"]
        clicked = p in imp["clicks"]
        colour = "cyan" if arm == "treatment" else "magenta" if arm == "control" else ""
        out.append(f"{imp['first_rank'] + p:>3} ")
        out.append("● " if clicked else "  ", style="bold yellow")
        out.append(f"{arm[:1].upper() if arm in ('control', 'treatment') else '·'} ", style=colour)
        out.append(f"{doc}\n")
    return out


class ExperimentsScreen(BaseScreen):
    """Every experiment of the target sidecar, refreshed every second."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "pause", "pause", tooltip="stop refreshing"),
    ]
    HELP_NAME = "Experiments"
    WIDGET_KEYS: ClassVar[list[tuple[str, str]]] = [
        ("↑/↓", "move in a table"),
        ("tab", "experiments ↔ their searches"),
    ]
    REFRESH_S = 1.0

    figures: var[list[dict[str, Any]]] = var(list, init=False)
    detail: var[dict[str, Any]] = var(dict, init=False)
    paused: var[bool] = var(False, init=False)

    def compose(self) -> ComposeResult:
        yield Static(id="exp-title")
        yield DataTable(id="exp-table", cursor_type="row")
        yield Static(id="exp-empty")  # the whole width: how to start one, while there is none
        with Horizontal(id="exp-body"):
            yield DataTable(id="exp-searches", cursor_type="row")
            yield Static(id="exp-list")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#exp-table", DataTable)
        # what decides first: a narrow terminal scrolls to the rest
        columns = ("experiment", "verdict", "effect", "interval", "p", "queries", "W/L/T · CTR c/t", "mode")
        for column in columns:
            table.add_column(column, key=column)
        searches = self.query_one("#exp-searches", DataTable)
        for column in ("query", "served", "clicks", "outcome"):
            searches.add_column(column, key=column)
        self._title()
        self.set_interval(self.REFRESH_S, self.refresh_figures)
        self.refresh_figures()

    def _title(self, note: str = "") -> None:
        state = "  [b]paused[/]" if self.paused else ""
        self.show("#exp-title", f"[b]Experiments ▸[/] {self.tui.client.name}{state}{note}")

    def refresh_figures(self) -> None:
        if not self.paused:
            self.load()

    @work(exclusive=True, group="experiments")
    async def load(self) -> None:
        try:
            found = await self.tui.client.experiments()
            name = self._selected(found)
            detail = await self.tui.client.experiment(name) if name else {}
        except AdminError as e:
            self._title(f"   [red]{e}[/]")
            return
        self.figures = found
        self.detail = detail
        empty = self.query_one("#exp-empty", Static)
        empty.display = not found
        if not found:
            empty.update(
                "No experiment configured. Add `experiment:` to a route of the config to compare two"
                " settings on live traffic (interleave, ab or shadow): see docs/experiments.md."
            )

    def _selected(self, found: list[dict[str, Any]]) -> str | None:
        """The experiment under the cursor (the first one before there is a cursor)."""
        if not found or not self.is_attached:
            return None
        row = self.query_one("#exp-table", DataTable).cursor_row
        return str(found[min(max(row, 0), len(found) - 1)]["name"])

    def watch_figures(self) -> None:
        if not self.is_attached:
            return
        self._title()
        table = self.query_one("#exp-table", DataTable)
        names = [e["name"] for e in self.figures]
        if [k.value for k in table.rows] == names:  # the same experiments: new figures in place
            for e in self.figures:
                for column, value in zip(table.columns, experiment_row(e), strict=True):
                    table.update_cell(e["name"], column, value)
        else:
            table.clear()
            for e in self.figures:
                table.add_row(*experiment_row(e), key=e["name"])

    def watch_detail(self) -> None:
        if not self.is_attached:
            return
        searches = self.query_one("#exp-searches", DataTable)
        recent = list({i["query_id"]: i for i in reversed(self.detail.get("recent", []))}.values())[::-1]
        keys = [k.value for k in searches.rows]
        at = searches.cursor_row
        selected = keys[at] if 0 <= at < len(keys) else None  # the search under the cursor stays there
        searches.clear()
        for imp in recent:
            query = (imp.get("query") or "")[:40]
            clicks = str(len(imp["clicks"]))
            searches.add_row(query, imp["served"], clicks, imp.get("outcome") or "–", key=imp["query_id"])
        if recent:
            ids = [i["query_id"] for i in recent]
            row = ids.index(selected) if selected in ids else 0
            searches.move_cursor(row=row)
            self.show("#exp-list", impression_list(recent[row]))
        else:
            self.show("#exp-list", "no searches of this experiment yet")

    def on_data_table_row_highlighted(self, message: DataTable.RowHighlighted) -> None:
        if message.data_table.id == "exp-table":
            self.load()
        elif message.data_table.id == "exp-searches" and message.row_key.value is not None:
            found = [i for i in self.detail.get("recent", []) if i["query_id"] == message.row_key.value]
            if found:
                self.show("#exp-list", impression_list(found[0]))

    def action_pause(self) -> None:
        self.paused = not self.paused
        self._title()
