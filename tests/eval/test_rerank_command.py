"""``rerank-sidecar rerank``: each file format, each output format, bad files in one line."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = [
    "Pick a LoRA rank of 8 or 16 for most jobs.",
    "Shipping to Norway takes a week.",
    "Java has eight primitive types.",
]
MINILM = ["--model", "all-MiniLM-L6-v2", "--device", "cpu", "--quiet"]


def rerank(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "rerank", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("docs")
    (d / "docs.txt").write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "body"])
    for i, doc in enumerate(DOCS):
        w.writerow([i, doc])
    (d / "docs.csv").write_text(buf.getvalue(), encoding="utf-8")
    (d / "docs.jsonl").write_text("\n".join(json.dumps({"text": x}) for x in DOCS), encoding="utf-8")
    (d / "queries.txt").write_text("which lora rank\nparcel to norway\n", encoding="utf-8")
    (d / "empty.txt").write_text("\n\n", encoding="utf-8")
    (d / "bad.txt").write_bytes(b"caf\xe9 au lait\n")
    return {p.name: p for p in d.iterdir()}


def test_each_file_format_gives_the_same_ranking(files: dict[str, Path]) -> None:
    outputs = []
    for name, extra in (("docs.txt", []), ("docs.csv", ["--column", "body"]), ("docs.jsonl", [])):
        r = rerank(
            "--query", "which lora rank", "--docs", str(files[name]), "--format", "json", *extra, *MINILM
        )
        assert r.returncode == 0, r.stderr
        (result,) = json.loads(r.stdout)
        outputs.append([(x["index"], round(x["score"], 5)) for x in result["ranking"]])
    assert outputs[0] == outputs[1] == outputs[2]
    assert outputs[0][0][0] == 0  # the LoRA document first
    scores = [s for _, s in outputs[0]]
    assert scores == sorted(scores, reverse=True)


def test_table_csv_many_queries_and_top(files: dict[str, Path]) -> None:
    table = rerank("--queries", str(files["queries.txt"]), "--docs", str(files["docs.txt"]), *MINILM)
    assert table.returncode == 0, table.stderr
    assert "query 1: which lora rank" in table.stdout and "query 2: parcel to norway" in table.stdout
    lines = table.stdout.splitlines()
    assert "Pick a LoRA rank" in lines[lines.index("query 1: which lora rank") + 2]
    assert "Shipping to Norway" in lines[lines.index("query 2: parcel to norway") + 2]
    # the table counts the file's documents from 1 (its "input" column), as the TUI's sandbox does
    header = lines[lines.index("query 1: which lora rank") + 1]
    assert header.split() == ["rank", "score", "input", "document"]
    first = lines[lines.index("query 1: which lora rank") + 2].split()
    assert DOCS[int(first[2]) - 1].startswith("Pick a LoRA rank")
    out = rerank(
        "--query", "norway", "--docs", str(files["docs.txt"]), "--format", "csv", "--top", "1", *MINILM
    )
    rows = list(csv.reader(io.StringIO(out.stdout)))
    assert rows[0] == ["query_id", "rank", "index", "score", "document"] and len(rows) == 2
    assert rows[1][4] == "Shipping to Norway takes a week."


@pytest.mark.parametrize(
    ("docs", "extra", "message"),
    [
        ("empty.txt", [], "no documents"),
        ("bad.txt", [], "not UTF-8"),
        ("docs.csv", ["--column", "nope"], "no column 'nope' (columns: id, body)"),
        ("missing.txt", [], "No such file"),
    ],
)
def test_bad_files_give_one_line_and_exit_2(
    files: dict[str, Path], docs: str, extra: list[str], message: str
) -> None:
    path = files.get(docs, Path("/nonexistent") / docs)
    r = rerank("--query", "q", "--docs", str(path), *extra, *MINILM)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr


@pytest.mark.parametrize("model", ["someone/no-such-reranker", "/nonexistent/model/dir"])
def test_a_model_that_cannot_load_is_one_line(
    tmp_path: Path, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as a machine without internet: no wait for the hub
    docs = tmp_path / "docs.txt"
    docs.write_text("one\ntwo\n")
    r = rerank("--model", model, "--backend", "cross-encoder", "--query", "q", "--docs", str(docs))
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"rerank-sidecar rerank: models.rerank: cannot load {model}"
    )


def test_a_model_to_download_with_no_way_to_the_hub_fails_in_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without HF_HUB_OFFLINE the hub client would retry for most of a minute; the sidecar asks
    whether the hub answers at all first."""
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    docs = tmp_path / "docs.txt"
    docs.write_text("one\ntwo\n")
    started = time.monotonic()
    r = rerank(
        "--model",
        "someone/not-cached-reranker",
        "--backend",
        "cross-encoder",
        "--query",
        "q",
        "--docs",
        str(docs),
    )
    assert time.monotonic() - started < 30
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1
    assert "127.0.0.1 cannot be reached" in lines[0] and "someone/not-cached-reranker" in lines[0]
