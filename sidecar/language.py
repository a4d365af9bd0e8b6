"""Which language a text is in, as far as its writing system tells, and whether a model reads it.

The detector reads Unicode scripts, not words: a text's letters are counted by script (a
run of letters of an alphabetic script is one token, each Han, kana or Hangul character is
one, as a BERT tokenizer splits them), and the script with the most tokens is the text's.
Where a script is written by one language (Han without kana: Chinese; kana: Japanese;
Hangul: Korean; Greek, Hebrew, Thai, ...) that is the language; where many languages share
it (Latin, Cyrillic, Arabic) the script's name stands for them. A script never misreads a
short English query as Catalan, costs microseconds, and tells exactly what harms a model
most: text in a script its vocabulary was not trained on. What it cannot tell is one Latin
language from another (see docs/configuration.md: Languages).
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

ANY = "any"

# the scripts that several languages write: their names are keys of their own
SHARED = ("latin", "cyrillic", "arabic", "devanagari")

# code point ranges -> script (letters only; digits, punctuation and symbols have none)
_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x0041, 0x005A, "latin"),
    (0x0061, 0x007A, "latin"),
    (0x00C0, 0x024F, "latin"),
    (0x0370, 0x03FF, "el"),
    (0x0400, 0x052F, "cyrillic"),
    (0x0530, 0x058F, "hy"),
    (0x0590, 0x05FF, "he"),
    (0x0600, 0x06FF, "arabic"),
    (0x0750, 0x077F, "arabic"),
    (0x0900, 0x097F, "devanagari"),
    (0x0980, 0x09FF, "bn"),
    (0x0A00, 0x0A7F, "pa"),
    (0x0A80, 0x0AFF, "gu"),
    (0x0B80, 0x0BFF, "ta"),
    (0x0C00, 0x0C7F, "te"),
    (0x0C80, 0x0CFF, "kn"),
    (0x0D00, 0x0D7F, "ml"),
    (0x0D80, 0x0DFF, "si"),
    (0x0E00, 0x0E7F, "th"),
    (0x0E80, 0x0EFF, "lo"),
    (0x0F00, 0x0FFF, "bo"),
    (0x1000, 0x109F, "my"),
    (0x10A0, 0x10FF, "ka"),
    (0x1100, 0x11FF, "hangul"),
    (0x1200, 0x139F, "am"),
    (0x1780, 0x17FF, "km"),
    (0x1E00, 0x1EFF, "latin"),
    (0x1F00, 0x1FFF, "el"),
    (0x3040, 0x30FF, "kana"),
    (0x3130, 0x318F, "hangul"),
    (0x31F0, 0x31FF, "kana"),
    (0x3400, 0x4DBF, "han"),
    (0x4E00, 0x9FFF, "han"),
    (0xAC00, 0xD7AF, "hangul"),
    (0xF900, 0xFAFF, "han"),
    (0xFB50, 0xFDFF, "arabic"),
    (0xFE70, 0xFEFF, "arabic"),
    (0xFF21, 0xFF3A, "latin"),
    (0xFF41, 0xFF5A, "latin"),
    (0xFF66, 0xFF9F, "kana"),
    (0x20000, 0x2FA1F, "han"),
)
_STARTS = [r[0] for r in _RANGES]
# scripts each of whose characters is a token of its own (no spaces between words)
_PER_CHARACTER = frozenset({"han", "kana", "hangul", "th", "lo", "km", "my", "bo"})

# ISO 639-1 codes -> the key a text in that language is detected as
_LATIN = (
    "af az bs ca cs cy da de en eo es et eu fi fil fr ga gl ha hr ht hu id is it jv la lt lv mg ms "
    "mt nl no nb nn pl pt ro sk sl so sq sv sw tl tr uz vi yo zu"
).split()
_CYRILLIC = "be bg kk ky mk mn ru sr tg tt uk".split()
_ARABIC = "ar fa ps sd ug ur".split()
_DEVANAGARI = "hi mr ne sa".split()
KEYS: dict[str, str] = {
    **dict.fromkeys(_LATIN, "latin"),
    **dict.fromkeys(_CYRILLIC, "cyrillic"),
    **dict.fromkeys(_ARABIC, "arabic"),
    **dict.fromkeys(_DEVANAGARI, "devanagari"),
    "zh": "zh",
    "ja": "ja",
    "ko": "ko",
    **{c: c for c in "el he hy bn pa gu ta te kn ml si th lo bo my ka am km".split()},
}
# what a detected key is written in, for the script names a config may also give
SCRIPTS = {"han": "zh", "kana": "ja", "hangul": "ko"}

_WORD = re.compile(r"\w+")


def key_of(code: str) -> str:
    """The detected key of a language code or script name (``de`` -> ``latin``, ``zh``,
    ``cyrillic``); ValueError for one it does not know."""
    c = code.strip().lower().replace("_", "-").split("-")[0]
    if c in KEYS:
        return KEYS[c]
    if c in SHARED:
        return c
    if c in SCRIPTS:
        return SCRIPTS[c]
    raise ValueError(
        f"{code!r}: not a language code the script detector knows (ISO 639-1 such as en, zh, ja, "
        f"ru; a script: {', '.join(SHARED)}; or any)"
    )


def keyed(mapping: Mapping[str, T], told: bool = False) -> dict[str, T]:
    """A mapping by language code as one by detected key (``han`` and ``zh`` are one key:
    ValueError when two codes are); ``told``: each code must be one the script tells apart
    (``de`` is not: it shares Latin with en, fr, ...)."""
    out: dict[str, T] = {}
    for code, value in mapping.items():
        key = key_of(code)
        if told and key in SHARED and key != code.strip().lower():
            raise ValueError(
                f"{code}: the script detector cannot tell {code} from the other {key}-script"
                f" languages: use the key {key}"
            )
        if key in out:
            raise ValueError(f"{code}: the same language as another key ({key})")
        out[key] = value
    return out


def _script(ch: str) -> str | None:
    cp = ord(ch)
    i = bisect.bisect_right(_STARTS, cp) - 1
    if i >= 0 and cp <= _RANGES[i][1]:
        return _RANGES[i][2]
    return None


def tokens(text: str) -> Counter[str]:
    """Tokens per script: a run of letters of one alphabetic script counts one, each
    character of a script written without spaces counts one."""
    out: Counter[str] = Counter()
    for word in _WORD.findall(text):
        previous = None
        for ch in word:
            script = _script(ch)
            if script is None:
                previous = None
                continue
            if script in _PER_CHARACTER or script != previous:
                out[script] += 1
            previous = script
    return out


@dataclass(frozen=True)
class Detected:
    """A text's language key (``zh``, ``latin``, ...: its most used script's) and the share
    of its tokens in each key it has."""

    language: str
    shares: tuple[tuple[str, float], ...]
    tokens: int = 1  # letter tokens in all (see ``tokens``)


_ASCII_WORDS = re.compile(r"[A-Za-z]+")


def detect(text: str) -> Detected | None:
    """The language key of ``text``, or None when it has no letters (digits, symbols)."""
    if text.isascii():  # the common case, without a look at each character
        words = len(_ASCII_WORDS.findall(text))
        return Detected("latin", (("latin", 1.0),), words) if words else None
    counts = tokens(text)
    if not counts:
        return None
    if counts["kana"]:  # kanji among kana: Japanese
        counts["kana"] += counts.pop("han", 0)
    keyed: Counter[str] = Counter()
    for script, n in counts.items():
        keyed[SCRIPTS.get(script, script)] += n
    total = sum(keyed.values())
    shares = tuple(sorted(((k, n / total) for k, n in keyed.items()), key=lambda kv: (-kv[1], kv[0])))
    return Detected(shares[0][0], shares, total)


def detect_all(texts: Iterable[str], chars: int = 300) -> Detected | None:
    """The language of several texts together (each read up to ``chars``): a window's."""
    return detect(" ".join(t[:chars] for t in texts))


# the share of a text's tokens a model must read (per character for Han: a third is about
# as many words in its scripts as in the others); measured on XQuAD-zh, CMRC and the article set
READ_SHARE = 1 / 3


@dataclass(frozen=True)
class Reads:
    """What a model reads: ``any``, or the detected keys of its languages."""

    keys: frozenset[str] | None  # None: any

    @classmethod
    def of(cls, languages: Sequence[str]) -> Reads:
        if ANY in languages:
            return cls(None)
        return cls(frozenset(key_of(c) for c in languages))

    def __call__(self, text: Detected | None) -> bool:
        """Whether a third of the text's tokens or more are in scripts it reads (a Chinese
        question around an English term, "flash attention 装不上", is read by an English
        model; "windows 系统更新失败" is not); a text with no letters is read by every model."""
        if self.keys is None or text is None:
            return True
        return self.share(text) >= READ_SHARE

    def share(self, text: Detected) -> float:
        """The share of the text's tokens in scripts it reads."""
        keys = self.keys
        return 1.0 if keys is None else sum(share for key, share in text.shares if key in keys)

    def more(self, variant: Detected | None, original: Detected | None) -> bool:
        """Whether a rewrite of a text gives it words it reads that the text did not have
        (``显存不够`` rewritten ``GPU memory不够``): rules that put terms of its language in."""
        if variant is None:
            return False
        had = 0.0 if original is None else self.share(original) * original.tokens
        return self(variant) or self.share(variant) * variant.tokens > had

    @property
    def everything(self) -> bool:
        return self.keys is None


# hub ids of models trained on English text only (all-MiniLM-L6-v2, the ms-marco
# cross-encoders, the -en bge models); a multilingual name wins over these
_ENGLISH = re.compile(r"all-minilm|all-mpnet|ms-?marco|bge-reranker-(base|large)|(^|[-_/])en([-_.]|$)")
_MANY = re.compile(r"multilingual|-m3\b|mmarco|labse|xlm-?r")


def default_languages(backend: str, model: str | None) -> tuple[str, ...]:
    """A model entry's languages when it gives none: ``any`` for remote engines, Qwen3 and
    the multilingual models (bge-reranker-v2-m3, multilingual e5 and MiniLM, mMARCO); ``en``
    for all-MiniLM-L6-v2, the ms-marco cross-encoders and the English bge models; ``any`` for
    a model it does not know (the model's card says: set ``languages``)."""
    if backend in ("remote", "qwen3") or model is None:
        return (ANY,)
    name = model.lower()
    if _MANY.search(name):
        return (ANY,)
    if _ENGLISH.search(name):
        return ("en",)
    return (ANY,)
