"""One search: the cluster's order beside the reranked one, moves, cuts, variants and rules."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.reactive import var
from textual.widgets import DataTable, Footer, Static

from sidecar.events.event import SearchEvent
from sidecar.vocab import reason_text
from tui.feed import bars, diff, histogram, model_scores, one_line
from tui.screens.base import BaseScreen


def _score(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "–"


class DiffScreen(BaseScreen):
    """Baseline and reranked lists side by side; ←/→ walk through the feed."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "step(-1)", "previous", priority=True, tooltip="previous search"),
        Binding("right", "step(1)", "next", priority=True, tooltip="next search"),
        Binding("s", "sandbox", "sandbox", tooltip="the search's query and titles in the sandbox"),
    ]
    HELP_NAME = "Diff"

    AUTO_FOCUS = "#diff-reranked"

    index: var[int] = var(0, init=False)  # the search shown, in ``feed``

    def __init__(self, feed: list[tuple[str, SearchEvent]], index: int) -> None:
        super().__init__()
        self.feed = feed
        self.set_reactive(DiffScreen.index, index)

    def compose(self) -> ComposeResult:
        yield Static(id="diff-title")
        yield Static(id="diff-rules")
        with Horizontal(id="diff-lists"):
            yield DataTable(id="diff-baseline", cursor_type="row")
            yield DataTable(id="diff-reranked", cursor_type="row")
        yield Static(id="diff-hist")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#diff-baseline", DataTable).add_columns("#", "baseline (cluster)", "score", "page")
        self.query_one("#diff-reranked", DataTable).add_columns("#", "reranked", "score", "move")
        self.show_event()

    @property
    def event(self) -> SearchEvent:
        return self.feed[self.index][1]

    def watch_index(self) -> None:
        self.show_event()

    def show_event(self) -> None:
        e = self.event
        source = self.feed[self.index][0]
        ms = e.timings.total_ms or 0
        flags = ",".join(e.flags) or "–"
        variants = e.variants
        why = reason_text(e.reason, e.upstream_status)
        reason = f" ({why})" if why else ""
        self.query_one("#diff-title", Static).update(
            Text.assemble(
                ("Diff ▸ ", "bold"),
                (f'"{one_line(e.query or "", 70)}"', "bold"),
                f"   {e.index}   {e.status.value}{reason}   {ms:.0f} ms"
                f"   variants {len(variants)}   flags {flags}   model {e.model or '–'}   {source}"
                f"   [{self.index + 1}/{len(self.feed)}]",
            )
        )
        lines = [f"variants: {v.text}  ({', '.join(v.rules)})" for v in variants]
        if e.rules:
            lines.insert(0, "rules: " + ", ".join(e.rules))
        if e.retrieval == "expanded":
            lines.append("baseline: the cluster's order for the query and its variants (expanded retrieval)")
        if not e.baseline:
            lines = [f"{e.status.value}{reason}: the cluster answered this search itself; nothing to compare"]
        if why == "language":
            lines = [
                f"language {e.language or '?'}: the route's model does not read it, so the cluster's"
                " order is served (a multilingual model for it: models_by_language)"
            ]
        self.query_one("#diff-rules", Static).update(Text("\n".join(lines) or "rules: none fired"))
        before, after = diff(e)
        width = max(12, self.app.size.width // 2 - 24)  # the screen's own size is 0 before its layout
        for table_id, rows in (("#diff-baseline", before), ("#diff-reranked", after)):
            table = self.query_one(table_id, DataTable)
            table.clear()
            for row in rows:
                style = "" if row.on_page else "grey50"
                if row.mark.startswith("▲"):
                    mark_style = "green"
                elif row.mark.startswith("▼") or row.mark == "left":
                    mark_style = "red"
                else:
                    mark_style = "grey50"
                table.add_row(
                    Text("·" if row.rank is None else str(row.rank), style=style),
                    Text(one_line(row.title, width), style=style),
                    Text(_score(row.score), style=style),
                    Text(row.mark, style=mark_style),
                )
        scores = model_scores(e)
        counts = histogram(scores, bins=20)
        span = f"{min(scores):.2f} … {max(scores):.2f}" if scores else "no scores"
        self.query_one("#diff-hist", Static).update(f"scores {bars(counts)}  {span}   ({len(scores)} hits)")

    def on_resize(self) -> None:
        self.show_event()

    def action_step(self, delta: int) -> None:
        self.index = max(0, min(len(self.feed) - 1, self.index + delta))

    def action_sandbox(self) -> None:
        e = self.event
        titles = [b.title for b in e.baseline if b.title]
        self.tui.open("sandbox", query=e.query or "", documents=titles)
