"""Pure helpers of the screens: feed rows, filters, diffs of two rankings, histograms, documents."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sidecar import docfiles
from sidecar.events.event import Page, SearchEvent
from sidecar.vocab import Status, reason_text

BARS = " ▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Filter:
    """``index:kb status:fallback src:host words``: every part must match."""

    index: str | None = None
    status: str | None = None
    source: str | None = None
    words: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Filter:
        """Read the filter line."""
        index = status = source = None
        words = []
        for part in text.split():
            key, sep, value = part.partition(":")
            if sep and key == "index":
                index = value
            elif sep and key == "status":
                status = value
            elif sep and key == "src":
                source = value
            else:
                words.append(part.casefold())
        return cls(index, status, source, tuple(words))

    def __call__(self, source: str, event: SearchEvent) -> bool:
        if self.index and self.index not in event.index:
            return False
        if self.status and not event.status.value.startswith(self.status):
            return False
        if self.source and self.source not in source:
            return False
        query = (event.query or "").casefold()
        return all(w in query for w in self.words)


def model_scores(event: SearchEvent) -> list[float]:
    """The model's scores of the whole window (cut hits too), or of the kept hits in older events."""
    window = [b.model_score for b in event.baseline if b.model_score is not None]
    return window or [f.model_score for f in event.final if f.model_score is not None]


def top1(event: SearchEvent) -> str:
    """``↺`` when the reranker changed the first hit, ``=`` when not, ``–`` when it did not run."""
    if event.status is not Status.APPLIED or not event.final:
        return "–"
    return "=" if event.final[0].original_rank == 1 else "↺"


def spread(event: SearchEvent) -> float | None:
    """Standard deviation of the top scores: small means the model could not tell hits apart."""
    scores = sorted((f.score for f in event.final), reverse=True)[:10]
    return statistics.pstdev(scores) if len(scores) > 1 else None


def feed_row(source: str, event: SearchEvent, query_width: int = 60, notes_width: int = 14) -> dict[str, str]:
    """One line of the live feed, as text per column (the query cut to ``query_width``, the
    notes to ``notes_width``)."""
    s = spread(event)
    return {
        "time": time.strftime("%H:%M:%S", time.localtime(event.time)),
        "src": source,
        "index": event.index,
        "query": one_line(event.query, query_width) if event.query else "–",
        "status": event.status.value,
        "top1": top1(event),
        "top": f"{event.final[0].score:.2f}" if event.final else "–",
        "sd": f"{s:.2f}" if s is not None else "–",
        "ms": f"{event.timings.total_ms or 0:.0f}",
        "notes": one_line(",".join(event.flags) or _reason(event), notes_width),
    }


def _reason(event: SearchEvent) -> str:
    """The reason a search was not reranked, with its language for reason language."""
    why = reason_text(event.reason, event.upstream_status)
    return f"{why} {event.language}" if why == "language" and event.language else why


def one_line(text: str, width: int) -> str:
    """Text on one line, cut with an ellipsis; control characters shown as spaces."""
    flat = "".join(c if c.isprintable() else " " for c in text)
    return flat if len(flat) <= width else flat[: width - 1] + "…"


@dataclass(frozen=True)
class DiffRow:
    """A hit of one list: rank (None when cut), title, score, a mark, and whether it is on the page."""

    rank: int | None
    title: str
    score: float | None
    mark: str
    on_page: bool


def diff(event: SearchEvent) -> tuple[list[DiffRow], list[DiffRow]]:
    """The whole window twice. Baseline rows are marked ``left`` when they leave the client's page;
    reranked rows ``▲2``, ``▼1``, ``=``, ``▲7 new`` (entered the page), and the hits the
    thresholds cut come last, marked ``cut``."""
    page = event.page or Page()
    start, end = page.from_, page.from_ + page.size
    titles = {b.id: b.title or str(b.id) for b in event.baseline}
    kept = {f.id for f in event.final}
    reranked_page = {f.id for f in event.final if start < f.rank <= end}
    before = []
    for b in event.baseline:
        on_page = start < b.rank <= end
        mark = "left" if event.final and on_page and b.id not in reranked_page else ""
        before.append(DiffRow(b.rank, titles[b.id], b.score, mark, on_page))
    after = []
    for f in event.final:
        rank, was = f.rank, f.original_rank
        on_page = start < rank <= end
        if was == rank:
            mark = "="
        else:
            mark = f"▲{was - rank}" if was > rank else f"▼{rank - was}"
        if on_page and not start < was <= end:
            mark += " new"
        after.append(DiffRow(rank, titles.get(f.id, str(f.id)), f.score, mark, on_page))
    if event.status is Status.APPLIED:
        for b in event.baseline:
            if b.id not in kept:
                after.append(DiffRow(None, titles[b.id], b.model_score, "cut", False))
    return before, after


def histogram(
    values: Sequence[float], bins: int = 10, lo: float | None = None, hi: float | None = None
) -> list[int]:
    """Counts of ``values`` in ``bins`` equal bins between ``lo`` and ``hi`` (their range by default)."""
    if not values:
        return [0] * bins
    lo = min(values) if lo is None else lo
    hi = max(values) if hi is None else hi
    width = (hi - lo) / bins or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int((v - lo) / width)))] += 1
    return counts


def bars(counts: Sequence[int]) -> str:
    """Counts as a row of block characters."""
    top = max(counts) if counts else 0
    if not top:
        return BARS[0] * len(counts)
    return "".join(BARS[round(c / top * (len(BARS) - 1))] if c else BARS[0] for c in counts)


def load_documents(spec: str) -> list[str]:
    """Documents from ``file.txt`` (a line each), ``file.csv[#column]`` or ``file.jsonl[#field]``."""
    name, _, column = spec.strip().partition("#")
    return docfiles.load_documents(name, column or None)
