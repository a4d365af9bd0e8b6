"""Whole-token term matching: a trie over token sequences, leftmost-longest, linear in the query."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sidecar.rewrite.text import Token, tokenize

T = TypeVar("T")


def case_sensitive(term: str, case: str) -> bool:
    """``auto``: a term written in capitals only (IT, OOM) is matched in capitals only."""
    if case != "auto":
        return case == "sensitive"
    letters = [c for c in term if c.isalpha()]
    return len(letters) >= 2 and all(c.isupper() for c in letters)


@dataclass
class _Node(Generic[T]):
    children: dict[str, _Node[T]] = field(default_factory=dict)
    entries: list[tuple[tuple[str, ...], bool, T]] = field(default_factory=list)


@dataclass(frozen=True)
class Match(Generic[T]):
    """Tokens ``first`` to ``last`` (inclusive) matched a term carrying ``value``."""

    first: int
    last: int
    term: str
    value: T


class TermMatcher(Generic[T]):
    """Terms (one or more tokens each) found as whole tokens: never inside a longer word."""

    def __init__(self) -> None:
        self._root: _Node[T] = _Node()
        self.depth = 0

    def add(self, term: str, value: T, *, case: str = "auto") -> None:
        """Add a term; the first added wins where two terms are the same."""
        tokens = tokenize(term)
        if not tokens:
            return
        node = self._root
        for t in tokens:
            node = node.children.setdefault(t.key, _Node())
        node.entries.append((tuple(t.text for t in tokens), case_sensitive(term, case), value))
        self.depth = max(self.depth, len(tokens))

    def __bool__(self) -> bool:
        return bool(self._root.children)

    def find(self, tokens: Sequence[Token], text: str) -> list[Match[T]]:
        """Non-overlapping matches, leftmost first, the longest at each position."""
        out: list[Match[T]] = []
        i = 0
        while i < len(tokens):
            found = self._longest(tokens, i, text)
            if found is None:
                i += 1
                continue
            out.append(found)
            i = found.last + 1
        return out

    def _longest(self, tokens: Sequence[Token], i: int, text: str) -> Match[T] | None:
        node = self._root
        best: Match[T] | None = None
        j = i
        while j < len(tokens) and j - i < self.depth:
            nxt = node.children.get(tokens[j].key)
            if nxt is None:
                break
            node = nxt
            for exact, sensitive, value in node.entries:
                if sensitive and tuple(t.text for t in tokens[i : j + 1]) != exact:
                    continue
                best = Match(i, j, text[tokens[i].start : tokens[j].end], value)
                break
            j += 1
        return best
