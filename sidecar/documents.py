"""Turn a hit's ``_source`` into the text the model reads."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
# A line that ends without closing punctuation, followed by one that goes on: one sentence.
_BROKEN_LINE = re.compile(r"(?<=[^\s.!?:;。！？；：])[ \t]*\r?\n[ \t]*(?=[a-z0-9(\"'])")
_SPACES = re.compile(r"[ \t\f\v\u00a0\u3000]+")
_NEWLINES = re.compile(r"\s*\n\s*")


def field_value(source: Any, path: str) -> str:
    """The text at a dotted path of a source document; lists are joined, missing is empty."""
    if isinstance(source, dict) and path in source:
        node: Any = source[path]
    else:
        node = source
        for part in path.split("."):
            if isinstance(node, dict):
                node = node.get(part)
            elif isinstance(node, list):
                node = [x.get(part) if isinstance(x, dict) else None for x in node]
            else:
                return ""
    return _flatten(node)


def _flatten(node: Any) -> str:
    if node is None:
        return ""
    if isinstance(node, list):
        return "\n".join(t for t in (_flatten(x) for x in node) if t)
    if isinstance(node, dict):
        return "\n".join(t for t in (_flatten(x) for x in node.values()) if t)
    return str(node)


def _collapsible(text: str) -> bool:
    """Whether _SPACES would change the text (substring tests: far faster than a regex scan)."""
    if "  " in text or "\t" in text or "\f" in text or "\v" in text:
        return True
    return not text.isascii() and ("\u00a0" in text or "\u3000" in text)


def clean_text(text: str) -> str:
    """Join lines broken mid-sentence and collapse whitespace. Each pattern runs only where the
    text has what it rewrites (most documents are one line with single spaces: a window of
    long abstracts is cleaned in well under a millisecond)."""
    lines = "\n" in text
    if lines:
        text = _BROKEN_LINE.sub(" ", text)
    if _collapsible(text):
        text = _SPACES.sub(" ", text)
    if lines:
        text = _NEWLINES.sub("\n", text)
    return text.strip()


def document_text(source: Any, fields: Sequence[str], template: str | None, max_chars: int) -> str:
    """The cleaned, bounded text of one hit; each field is cleaned on its own, then joined."""
    if template is None:
        text = "\n".join(v for v in (clean_text(field_value(source, f)) for f in fields) if v)
    else:
        text = _PLACEHOLDER.sub(lambda m: clean_text(field_value(source, m.group(1))), template)
        text = _NEWLINES.sub("\n", _SPACES.sub(" ", text)).strip()
    return text[:max_chars]


def window_texts(
    sources: Sequence[Any], fields: Sequence[str], template: str | None, max_chars: int
) -> tuple[list[str], list[str]]:
    """For each hit's source, its ``document_text`` and the raw text of its first field (the
    event's title), in one pass: a window of a hundred hits is read on the event loop for every
    search, so the common case (a string at a top-level key, ASCII on one line with single
    spaces, which ``clean_text`` would only strip) is read inline."""
    if template is not None:
        return (
            [document_text(source, fields, template, max_chars) for source in sources],
            [field_value(source, fields[0]) for source in sources],
        )
    texts: list[str] = []
    titles: list[str] = []
    for source in sources:
        parts: list[str] = []
        for k, f in enumerate(fields):
            value = source.get(f) if type(source) is dict else None
            if type(value) is not str:
                value = field_value(source, f)
            if k == 0:
                titles.append(value)
            if value.isascii() and not (
                "\n" in value or "  " in value or "\t" in value or "\f" in value or "\v" in value
            ):
                value = value.strip()
            else:
                value = clean_text(value)
            if value:
                parts.append(value)
        texts.append("\n".join(parts)[:max_chars])
    return texts, titles
