"""Documents from files: .txt (a line each), .csv (a column), .jsonl (a field); errors in one line."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


class DocumentsError(ValueError):
    """A documents file that cannot be read, with the file, the line and the reason."""


def load_documents(path: str | Path, column: str | None = None) -> list[str]:
    """The non-empty documents of a file. ``column`` names the CSV column or JSONL field;
    by default ``text`` when there is one, else the first."""
    path = Path(path).expanduser()
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DocumentsError(f"{path}: {e.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DocumentsError(f"{path}: not UTF-8 (byte {e.start})") from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        docs = _csv_column(text, column, path)
    elif suffix in (".jsonl", ".ndjson"):
        docs = _jsonl_field(text.splitlines(), column, path)
    else:
        docs = [line.strip() for line in text.splitlines()]
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise DocumentsError(f"{path}: no documents")
    return docs


def _csv_column(text: str, column: str | None, path: Path) -> list[str]:
    try:
        rows = list(csv.DictReader(io.StringIO(text)))
    except csv.Error as e:
        raise DocumentsError(f"{path}: not CSV: {e}") from None
    fields = list(rows[0]) if rows else []
    name = column or ("text" if "text" in fields else (fields[0] if fields else ""))
    if not rows or name not in fields:
        raise DocumentsError(f"{path}: no column {name!r} (columns: {', '.join(fields) or 'none'})")
    return [str(r.get(name) or "").strip() for r in rows]


def jsonl_values(lines: Iterable[str], path: Path) -> Iterator[tuple[int, Any]]:
    """Each non-blank line's JSON value with its line number; DocumentsError naming the line
    that is not JSON."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except ValueError:
            raise DocumentsError(f"{path}:{n}: not JSON") from None


def _jsonl_field(lines: list[str], field: str | None, path: Path) -> list[str]:
    out = []
    for n, doc in jsonl_values(lines, path):
        if isinstance(doc, str):
            out.append(doc)
            continue
        if not isinstance(doc, dict):
            raise DocumentsError(f"{path}:{n}: expected an object or a string")
        name = field or ("text" if "text" in doc else next(iter(doc), ""))
        if name not in doc:
            raise DocumentsError(f"{path}:{n}: no field {name!r}")
        out.append(str(doc[name]))
    return out
