"""Scores over the recent searches of one index, with the route's thresholds drawn in."""

from __future__ import annotations

import fnmatch
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.reactive import var
from textual.widgets import Footer, Static
from textual_plotext import PlotextPlot

from sidecar.vocab import Status
from tui.client import AdminError
from tui.feed import model_scores
from tui.screens.base import BaseScreen

SIZES = (100, 500, 2000)


def route_for(config: dict[str, Any], index: str) -> tuple[int, dict[str, Any]] | None:
    """The first route whose patterns cover every index of ``index`` (as the sidecar matches)."""
    names = [n for n in index.split(",") if n] or ["_all"]
    for i, route in enumerate(config.get("routes") or []):
        if all(any(fnmatch.fnmatchcase(n, p) for p in route["indices"]) for n in names):
            return i, route
    return None


def thresholds_text(route: dict[str, Any] | None) -> str:
    """The route's thresholds, one per line."""
    if route is None:
        return "no route for this index"

    def show(key: str) -> str:
        value = route.get(key)
        return "off" if value is None else str(value)

    alpha = "default" if route.get("fusion_alpha") is None else route["fusion_alpha"]
    return "\n".join(
        [
            "[b]thresholds[/]",
            f"min_score       {show('min_score')}",
            f"relative_to_top {show('relative_to_top')}",
            f"max_drop        {show('max_drop')}",
            f"max_hits        {show('max_hits')}",
            f"fusion          {route.get('fusion')} (alpha {alpha})",
        ]
    )


class DistributionScreen(BaseScreen):
    """A histogram of the model's scores of the last N searches of an index."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("i", "next_index", "next index"),
        Binding("n", "next_size", "last N", tooltip="last 100 / 500 / 2000 searches"),
    ]
    HELP_NAME = "Distribution"

    config: var[dict[str, Any]] = var(dict, init=False)  # the sidecar's running config
    index_choice: var[int] = var(0, init=False)
    size_choice: var[int] = var(1, init=False)

    def compose(self) -> ComposeResult:
        yield Static(id="dist-title")
        with Horizontal(id="dist-body"):
            yield PlotextPlot(id="dist-plot")
            yield Static(id="dist-side")
        yield Footer()

    def on_mount(self) -> None:
        self.load_config()
        self.draw()

    def watch_config(self) -> None:
        self.draw()

    def watch_index_choice(self) -> None:
        self.draw()

    def watch_size_choice(self) -> None:
        self.draw()

    @work(exclusive=True, group="dist-config")
    async def load_config(self) -> None:
        try:
            self.config = await self.tui.client.config()
        except AdminError as e:
            self.notify(f"config: {e}", severity="error")

    def indices(self) -> list[str]:
        source = self.tui.client.name
        seen: dict[str, None] = {}
        for src, e in self.tui.recent():
            if src == source and e.status is Status.APPLIED:
                seen.setdefault(e.index, None)
        return sorted(seen)

    def draw(self) -> None:
        if not self.is_attached:  # the config arrived after the screen closed
            return
        indices = self.indices()
        n = SIZES[self.size_choice]
        index = indices[self.index_choice % len(indices)] if indices else None
        source = self.tui.client.name
        events = [
            e
            for src, e in self.tui.recent()
            if src == source and e.index == index and e.status is Status.APPLIED
        ][:n]
        scores = [s for e in events for s in model_scores(e)]
        found = route_for(self.config, index) if index and self.config else None
        route = found[1] if found else None
        self.query_one("#dist-title", Static).update(
            f"[b]Distribution ▸[/] {index or '–'} · {len(events)} of the last {n} searches"
            f" · {len(scores)} scores · {source}"
        )
        plot = self.query_one("#dist-plot", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        if scores:
            plt.hist(scores, bins=40)
            if route and route.get("min_score") is not None:
                plt.vline(route["min_score"], "red")
            plt.title("the model's score of each hit")
        else:
            plt.title("no reranked search yet")
        plot.refresh()
        side = thresholds_text(route) if index else "no searches yet"
        self.query_one("#dist-side", Static).update(side + "\n\n[red]│[/] min_score")

    def action_next_index(self) -> None:
        self.index_choice += 1

    def action_next_size(self) -> None:
        self.size_choice = (self.size_choice + 1) % len(SIZES)
