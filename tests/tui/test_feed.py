"""The TUI's pure helpers: filters, diffs of two rankings, histograms, documents files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sidecar.docfiles import DocumentsError
from sidecar.events.event import SearchEvent
from tui.feed import Filter, bars, diff, feed_row, histogram, load_documents, one_line, top1


def event(**kw: Any) -> SearchEvent:
    base: dict[str, Any] = {
        "id": "e1",
        "time": 0,
        "index": "kb",
        "query": "lora rank",
        "status": "applied",
        "page": {"from": 0, "size": 2},
        "baseline": [
            {"id": "a", "title": "A", "score": 9.0, "rank": 1, "model_score": 0.2},
            {"id": "b", "title": "B", "score": 8.0, "rank": 2, "model_score": 0.9},
            {"id": "c", "title": "C", "score": 7.0, "rank": 3, "model_score": 0.5},
            {"id": "d", "title": "D", "score": 6.0, "rank": 4, "model_score": 0.01},
        ],
        # the thresholds cut d
        "final": [
            {"id": "b", "score": 0.9, "model_score": 0.9, "rank": 1, "original_rank": 2},
            {"id": "c", "score": 0.5, "model_score": 0.5, "rank": 2, "original_rank": 3},
            {"id": "a", "score": 0.2, "model_score": 0.2, "rank": 3, "original_rank": 1},
        ],
        "timings": {"total_ms": 41.6},
        "flags": ["low"],
    }
    base.update(kw)
    return SearchEvent.model_validate(base)


def test_diff_marks_moves_page_changes_and_cuts() -> None:
    before, after = diff(event())
    assert [(r.rank, r.title, r.mark, r.on_page) for r in before] == [
        (1, "A", "left", True),
        (2, "B", "", True),
        (3, "C", "", False),
        (4, "D", "", False),
    ]
    assert [(r.rank, r.title, r.score, r.mark, r.on_page) for r in after] == [
        (1, "B", 0.9, "▲1", True),
        (2, "C", 0.5, "▲1 new", True),
        (3, "A", 0.2, "▼2", False),
        (None, "D", 0.01, "cut", False),
    ]
    # a fallback has no reranked list: nothing left the page, nothing was cut
    before, after = diff(event(status="fallback", final=[]))
    assert [r.mark for r in before] == ["", "", "", ""] and after == []


def test_feed_row_and_top1() -> None:
    row = feed_row("s1", event())
    assert row["top1"] == "↺" and row["top"] == "0.90" and row["ms"] == "42" and row["notes"] == "low"
    assert top1(event(final=[{"id": "a", "score": 1, "rank": 1, "original_rank": 1}])) == "="
    assert top1(event(status="bypass", final=[], reason="size-0")) == "–"
    assert feed_row("s1", event(status="bypass", final=[], flags=[], reason="size-0"))["notes"] == "size-0"
    assert feed_row("s1", event(query=None))["query"] == "–"  # a bypassed search: no query text was read


def test_filter() -> None:
    f = Filter.parse("index:kb status:fall src:9301 LoRA")
    assert f("127.0.0.1:9301", event(status="fallback", query="which LoRA rank"))
    assert not f("127.0.0.1:9301", event(status="applied", query="which LoRA rank"))
    assert not f("127.0.0.1:9999", event(status="fallback", query="which LoRA rank"))
    assert not f("127.0.0.1:9301", event(status="fallback", query="java"))
    assert Filter.parse("")("x", event())


def test_one_line_histogram_bars() -> None:
    assert one_line("a\nb\x00c" + "x" * 100, 10) == "a b c" + "xxxx…"
    assert histogram([0.0, 0.5, 1.0, 1.0], bins=2) == [1, 3]
    assert histogram([], bins=3) == [0, 0, 0]
    assert histogram([2.0, 2.0], bins=2) == [2, 0]
    assert bars([0, 1, 2]) == " ▄█" and bars([0, 0]) == "  "


def test_load_documents_from_each_format(tmp_path: Path) -> None:
    (tmp_path / "d.txt").write_text("first doc\n\nsecond doc\n", encoding="utf-8")
    assert load_documents(str(tmp_path / "d.txt")) == ["first doc", "second doc"]
    (tmp_path / "d.csv").write_text('id,body\n1,"one, with comma"\n2,two\n', encoding="utf-8")
    assert load_documents(str(tmp_path / "d.csv") + "#body") == ["one, with comma", "two"]
    assert load_documents(str(tmp_path / "d.csv")) == ["1", "2"]  # no text column: the first
    (tmp_path / "d.jsonl").write_text(
        '{"text": "显存不足"}\n"plain string"\n{"text": "x"}\n', encoding="utf-8"
    )
    assert load_documents(str(tmp_path / "d.jsonl")) == ["显存不足", "plain string", "x"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("e.txt", b"", "no documents"),
        ("bad.txt", b"caf\xe9", "not UTF-8"),
        ("c.csv", b"id,body\n1,x\n", "no column 'text'"),
        ("j.jsonl", b'{"a": 1}\nnot json\n', ":2: not JSON"),
        ("k.jsonl", b"[1, 2]\n", "expected an object"),
    ],
)
def test_bad_documents_files_say_why(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    (tmp_path / name).write_bytes(content)
    spec = str(tmp_path / name) + ("#text" if name == "c.csv" else "")
    with pytest.raises(DocumentsError, match=message):
        load_documents(spec)
    with pytest.raises(DocumentsError, match="No such file"):
        load_documents(str(tmp_path / "missing.txt"))


def test_a_figures_line_breaks_between_figures_never_inside_one() -> None:
    from tui.screens.live import fit

    line = (
        "QPS 0.1   p50 57 ms (os 1 · queue 2 · model 52)   p95 309 ms   fallback 0.0%   cache 0.0%   queue 0"
    )
    lines = fit(line, 78).splitlines()
    assert len(lines) == 2 and all(len(x) <= 78 for x in lines)
    assert lines[1] == "cache 0.0%   queue 0"  # whole figures on the next line, not "queue" / "0"
    assert fit(line, 200) == line
