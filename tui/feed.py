"""Pure helpers of the screens: feed rows, filters, diffs of two rankings, histograms, documents."""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sidecar import docfiles

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

    def __call__(self, source: str, event: Mapping[str, Any]) -> bool:
        if self.index and self.index not in str(event.get("index", "")):
            return False
        if self.status and not str(event.get("status", "")).startswith(self.status):
            return False
        if self.source and self.source not in source:
            return False
        query = str(event.get("query") or "").casefold()
        return all(w in query for w in self.words)


def model_scores(event: Mapping[str, Any]) -> list[float]:
    """The model's scores of the whole window (cut hits too), or of the kept hits in older events."""
    window = [b["model_score"] for b in event.get("baseline") or [] if "model_score" in b]
    if window:
        return [float(s) for s in window]
    return [float(f["model_score"]) for f in event.get("final") or [] if "model_score" in f]


def top1(event: Mapping[str, Any]) -> str:
    """``↺`` when the reranker changed the first hit, ``=`` when not, ``–`` when it did not run."""
    final = event.get("final") or []
    if event.get("status") != "applied" or not final:
        return "–"
    return "=" if final[0].get("original_rank") == 1 else "↺"


def spread(event: Mapping[str, Any]) -> float | None:
    """Standard deviation of the top scores: small means the model could not tell hits apart."""
    scores = sorted((float(f["score"]) for f in event.get("final") or []), reverse=True)[:10]
    return statistics.pstdev(scores) if len(scores) > 1 else None


def feed_row(source: str, event: Mapping[str, Any]) -> dict[str, str]:
    """One line of the live feed, as text per column."""
    final = event.get("final") or []
    s = spread(event)
    notes = ",".join(event.get("flags") or []) or str(event.get("reason") or "")
    return {
        "time": time.strftime("%H:%M:%S", time.localtime(float(event.get("time", 0)))),
        "src": source,
        "index": str(event.get("index", "")),
        "query": one_line(str(event.get("query") or ""), 60),
        "status": str(event.get("status", "")),
        "top1": top1(event),
        "top": f"{float(final[0]['score']):.2f}" if final else "–",
        "sd": f"{s:.2f}" if s is not None else "–",
        "ms": f"{float(event.get('timings', {}).get('total_ms', 0)):.0f}",
        "notes": notes,
    }


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


def diff(event: Mapping[str, Any]) -> tuple[list[DiffRow], list[DiffRow]]:
    """The whole window twice. Baseline rows are marked ``left`` when they leave the client's page;
    reranked rows ``▲2``, ``▼1``, ``=``, ``▲7 new`` (entered the page), and the hits the
    thresholds cut come last, marked ``cut``."""
    baseline = event.get("baseline") or []
    final = event.get("final") or []
    page = event.get("page") or {"from": 0, "size": 10}
    start = int(page.get("from", 0))
    end = start + int(page.get("size", 10))
    titles = {b.get("id"): str(b.get("title") or b.get("id")) for b in baseline}
    kept = {f.get("id") for f in final}
    reranked_page = {f.get("id") for f in final if start < int(f["rank"]) <= end}
    before = []
    for b in baseline:
        rank = int(b["rank"])
        on_page = start < rank <= end
        mark = "left" if final and on_page and b.get("id") not in reranked_page else ""
        before.append(DiffRow(rank, titles[b.get("id")], _num(b.get("score")), mark, on_page))
    after = []
    for f in final:
        rank, was = int(f["rank"]), int(f["original_rank"])
        on_page = start < rank <= end
        if was == rank:
            mark = "="
        else:
            mark = f"▲{was - rank}" if was > rank else f"▼{rank - was}"
        if on_page and not start < was <= end:
            mark += " new"
        after.append(
            DiffRow(rank, titles.get(f.get("id"), str(f.get("id"))), _num(f.get("score")), mark, on_page)
        )
    if event.get("status") == "applied":
        for b in baseline:
            if b.get("id") not in kept:
                after.append(DiffRow(None, titles[b.get("id")], _num(b.get("model_score")), "cut", False))
    return before, after


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


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
