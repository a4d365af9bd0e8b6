"""The reranker's web demo in the terminal: a query, documents, an instruction, the ranking."""

from __future__ import annotations

import time
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Input, Static, TextArea

from sidecar.docfiles import DocumentsError
from tui.client import AdminError
from tui.feed import bars, histogram, load_documents, one_line
from tui.screens.base import BaseScreen


class SandboxScreen(BaseScreen):
    """Documents typed (one per line) or loaded from a file, ranked by the sidecar's model."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "rank", "rank", priority=True, tooltip="rank the documents"),
        Binding(
            "ctrl+o", "open", "open file", priority=True, tooltip="load a .txt / .csv[#col] / .jsonl[#field]"
        ),
    ]
    HELP_NAME = "Sandbox"
    WIDGET_KEYS: ClassVar[list[tuple[str, str]]] = [("tab", "next field")]

    def __init__(self, query: str = "", documents: list[str] | None = None) -> None:
        super().__init__()
        self.initial_query = query
        self.initial_documents = documents or []

    def compose(self) -> ComposeResult:
        yield Static(id="sandbox-title")
        with Horizontal(id="sandbox-body"):
            with Vertical(id="sandbox-inputs"):
                yield Input(value=self.initial_query, placeholder="query", id="sandbox-query")
                yield Input(placeholder="instruction (optional)", id="sandbox-instruction")
                yield TextArea("\n".join(self.initial_documents), id="sandbox-docs")
                yield Input(placeholder="file: docs.txt, docs.csv#text, docs.jsonl#body", id="sandbox-file")
            with Vertical(id="sandbox-output"):
                yield DataTable(id="sandbox-ranking", cursor_type="row")
                yield Static(id="sandbox-status")
        yield Footer()

    def on_mount(self) -> None:
        ranking = self.query_one("#sandbox-ranking", DataTable)
        ranking.add_columns("rank", "score", "input", "move", "document")
        self.query_one("#sandbox-title", Static).update(
            f"[b]Sandbox ▸[/] {self.tui.client.name}   one document per line; ctrl+r ranks"
        )
        self.query_one("#sandbox-query", Input).focus()

    def documents(self) -> list[str]:
        return [d.strip() for d in self.query_one("#sandbox-docs", TextArea).text.splitlines() if d.strip()]

    def status(self, text: str, *, error: bool = False) -> None:
        self.show("#sandbox-status", Text(text, style="red" if error else ""))

    def action_open(self) -> None:
        box = self.query_one("#sandbox-file", Input)
        box.value = ""  # a new path, typed from scratch
        box.focus()

    def on_input_submitted(self, message: Input.Submitted) -> None:
        if message.input.id == "sandbox-file":
            self.load(message.value)
        else:
            self.action_rank()

    def load(self, spec: str) -> None:
        """Put a file's documents in the documents area."""
        try:
            docs = load_documents(spec)
        except DocumentsError as e:
            self.status(str(e), error=True)
            return
        self.query_one("#sandbox-docs", TextArea).text = "\n".join(" ".join(d.split()) for d in docs)
        self.status(f"loaded {len(docs)} documents from {spec.strip()}")

    @work(exclusive=True, group="sandbox")
    async def action_rank(self) -> None:
        query = self.query_one("#sandbox-query", Input).value.strip()
        instruction = self.query_one("#sandbox-instruction", Input).value.strip() or None
        docs = self.documents()
        if not query or not docs:
            self.status("type a query and at least one document", error=True)
            return
        self.status(f"ranking {len(docs)} documents…")
        started = time.perf_counter()
        try:
            result = await self.tui.client.rerank(query, docs, instruction)
        except AdminError as e:
            self.status(f"not ranked: {e}", error=True)
            return
        table = self.query_one("#sandbox-ranking", DataTable)
        table.clear()
        width = max(10, self.app.size.width * 3 // 5 - 32)  # the output: 3/5 of the screen
        for rank, item in enumerate(result["ranking"], 1):
            i = item["index"]  # the API's index counts from 0; inputs are shown from 1, as typed
            up = i + 1 - rank
            move = Text(f"▲{up}", style="green") if up > 0 else Text(f"▼{-up}", style="red") if up else "="
            table.add_row(str(rank), f"{item['score']:.4f}", str(i + 1), move, one_line(docs[i], width))
        scores = result["scores"]
        took = (time.perf_counter() - started) * 1000
        self.status(
            f"{len(docs)} documents, model {result['model']}, {result['took_ms']:.0f} ms in the model"
            f" ({took:.0f} ms round trip)   scores {bars(histogram(scores, bins=16))}"
        )
