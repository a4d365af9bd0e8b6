"""Text handling for rules: normalization, and tokens that respect Latin words and CJK characters."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

# Punctuation that CJK text uses around and between words; NFKC leaves these alone.
_CJK_PUNCT = re.compile(
    r"[\u3000-\u3003\u3008-\u3011\u3014-\u301f\u30fb\ufe10-\ufe19\ufe30-\ufe4f\u2026\u2014\u00b7]"
)
# Sentence-final marks that carry no meaning for search.
_TRAILING = re.compile(r"[\s?!.,;:。？！，；：]+$")
_SPACE = re.compile(r"\s+")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Spaces next to Han or kana carry no meaning: "显存 不足" and "显存不足" are the same query.
_HAN = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"
_HAN_SPACE = re.compile(f" (?=[{_HAN}])|(?<=[{_HAN}]) ")


def is_cjk(c: str) -> bool:
    """Han, kana and hangul characters: scripts written without spaces between words."""
    o = ord(c)
    return (
        0x4E00 <= o <= 0x9FFF
        or 0x3400 <= o <= 0x4DBF
        or 0x3040 <= o <= 0x30FF
        or 0xAC00 <= o <= 0xD7AF
        or 0xF900 <= o <= 0xFAFF
        or 0x20000 <= o <= 0x3FFFF
    )


@functools.lru_cache(maxsize=8192)
def char_class(c: str) -> str:
    """``cjk``, ``word`` (letters, digits, marks, underscore), ``space`` or ``punct``."""
    if is_cjk(c):
        return "cjk"
    if c.isalnum() or c == "_" or unicodedata.category(c) in ("Mn", "Mc"):
        return "word"
    if c.isspace():
        return "space"
    return "punct"


def scrub(text: str) -> str:
    """Lone surrogates (a JSON body may carry them as escapes) become U+FFFD: they are not text."""
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def clean(text: str, convert: Callable[[str], str] | None = None) -> str:
    """NFKC (full-width to half-width), optional Chinese conversion, CJK punctuation to spaces,
    trailing question marks dropped, whitespace collapsed. Case is kept."""
    text = unicodedata.normalize("NFKC", scrub(text))
    if convert is not None:
        text = convert(text)
    text = _CJK_PUNCT.sub(" ", text)
    text = _TRAILING.sub("", text)
    return _SPACE.sub(" ", text).strip()


def normalize(text: str, convert: Callable[[str], str] | None = None) -> str:
    """The comparison form of a query: ``clean``, case folded, no spaces beside Han. Idempotent."""

    def once(t: str) -> str:
        return _HAN_SPACE.sub("", unicodedata.normalize("NFKC", clean(t, convert).casefold()))

    folded = once(text)
    # Case folding can leave text that NFKC or cleanup change again (rare ligatures): settle it.
    for _ in range(4):
        again = once(folded)
        if again == folded:
            break
        folded = again
    return folded


@dataclass(frozen=True)
class Token:
    """A whole word, one CJK character, or one punctuation mark, with its span in the text."""

    text: str
    start: int
    end: int
    kind: str

    @property
    def key(self) -> str:
        """The case-folded form rules are looked up by."""
        return self.text.casefold()


def tokenize(text: str) -> list[Token]:
    """Tokens in order; spaces separate but are not tokens. Linear in the text's length."""
    out: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        kind = char_class(text[i])
        if kind == "space":
            i += 1
            continue
        j = i + 1
        if kind == "word":
            while j < n and char_class(text[j]) == "word":
                j += 1
        out.append(Token(text[i:j], i, j, kind))
        i = j
    return out


def splice(text: str, edits: list[tuple[int, int, str]]) -> str:
    """Replace non-overlapping spans (sorted by start), spacing a Latin word off its neighbours."""
    out: list[str] = []
    pos = 0
    for start, end, new in edits:
        out.append(text[pos:start])
        before = text[start - 1] if start > 0 else " "
        after = text[end] if end < len(text) else " "
        if new and _needs_space(before, new[0]):
            out.append(" ")
        out.append(new)
        if new and _needs_space(new[-1], after):
            out.append(" ")
        pos = end
    out.append(text[pos:])
    return _SPACE.sub(" ", "".join(out)).strip()


def _needs_space(left: str, right: str) -> bool:
    a, b = char_class(left), char_class(right)
    return a in ("word", "cjk") and b in ("word", "cjk") and not (a == "cjk" and b == "cjk")
