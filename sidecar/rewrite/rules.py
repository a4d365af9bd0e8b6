"""A route's rules compiled once per config load, and the variants they make of a query."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sidecar.config.rewrite import Abbreviation, OneWaySynonym, RewriteConfig, as_pattern, parse_arrow
from sidecar.patterns import Pattern, compile_pattern
from sidecar.rewrite.terms import TermMatcher, case_sensitive
from sidecar.rewrite.text import Token, clean, normalize, scrub, splice, tokenize

DEFAULT_PRONOUNS = ("it", "this", "that", "它", "这个", "那个")
# "this"/"that" are pronouns only at the end of a query or before a verb ("this fails"),
# determiners otherwise ("this model"): only the former are replaced.
_DETERMINERS = frozenset({"this", "that", "these", "those"})
_AUX = frozenset(
    "is isn was wasn does doesn did didn do don can cannot could couldn will won would wouldn should "
    "has hasn have haven had works work worked fails fail failed means mean crashes crashed hangs "
    "returns return shows show supports support needs need uses use".split()
)
# Question and filler words: a query that is only these and one more word has no object.
_FILLERS = (
    "how do does did i to what is are was why can could should would the a an we you my me where when "
    "which way best please there 怎么 怎样 怎么样 如何 什么 为什么 请问 可以 应该 能否 是否 需要 多少 "
    "多久 多长时间 什么时候 哪里 哪儿 哪个 一次 "
    "吗 呢 啊 吧 要 能 该 是 的 了 我 在 去 把"
).split()


@dataclass(frozen=True)
class Variant:
    """A rewritten query and the rules that made it."""

    text: str
    rules: tuple[str, ...]


@dataclass(frozen=True)
class Rewrite:
    """The original query, its variants (at most ``max_variants``) and notes (``llm:timeout``)."""

    query: str
    variants: tuple[Variant, ...] = ()
    notes: tuple[str, ...] = ()
    took_ms: float = field(default=0.0, compare=False)

    @property
    def rules(self) -> list[str]:
        """Every rule that fired, once each, in order, and the notes."""
        seen: dict[str, None] = {}
        for v in self.variants:
            seen.update(dict.fromkeys(v.rules))
        seen.update(dict.fromkeys(self.notes))
        return list(seen)


def _case(entry: str | Abbreviation | OneWaySynonym) -> str:
    return "auto" if isinstance(entry, str) else entry.case


class Rewriter:
    """Compiled rules of one route; ``rewrite`` is pure and deterministic."""

    def __init__(self, cfg: RewriteConfig, convert: Callable[[str], str] | None = None) -> None:
        self.cfg = cfg
        self.convert = convert
        self._replace: TermMatcher[str] = TermMatcher()
        self._prefixes: list[tuple[str, str]] = []
        self._suffixes: list[tuple[str, str]] = []
        for key, out in cfg.replace.items():
            k, o = key.strip(), out.strip()
            if k.endswith("*"):
                self._prefixes.append((k[:-1].casefold(), o[:-1]))
            elif k.startswith("*"):
                self._suffixes.append((k[1:].casefold(), o[1:]))
            else:
                self._replace.add(k, o)
        self._patterns: list[Pattern] = []
        for entry in cfg.patterns:
            rule = as_pattern(entry)
            sensitive = rule.case == "sensitive"
            self._patterns.append(compile_pattern(rule.match, rule.replace, case_sensitive=sensitive))
        self._pronouns: TermMatcher[bool] = TermMatcher()
        for p in cfg.pronouns if cfg.pronouns is not None else DEFAULT_PRONOUNS:
            self._pronouns.add(p, p.casefold() in _DETERMINERS, case="insensitive")
        self._fillers: TermMatcher[None] = TermMatcher()
        for f in _FILLERS:
            self._fillers.add(f, None, case="insensitive")
        self._abbreviations: TermMatcher[str] = TermMatcher()
        for key, abbr in cfg.abbreviations.items():
            expansion = abbr if isinstance(abbr, str) else abbr.expand
            self._abbreviations.add(key.strip(), expansion.strip(), case=_case(abbr))
        self._synonyms: TermMatcher[list[str]] = TermMatcher()
        for term, alternatives, case in self._synonym_entries():
            self._synonyms.add(term, alternatives, case=case)
        # the rules of each language that has some of its own: these and its own together
        self._by_language = {k: Rewriter(cfg.for_language(k), convert) for k in cfg.by_language}

    def for_language(self, language: str | None) -> Rewriter:
        """The rewriter of queries in ``language`` (its own rules added), else this one."""
        return self._by_language.get(language, self) if language is not None else self

    def _synonym_entries(self) -> list[tuple[str, list[str], str]]:
        merged: dict[tuple[str, bool], tuple[str, list[str], str]] = {}
        for entry in self.cfg.synonyms:
            if isinstance(entry, list):
                terms = [t.strip() for t in entry if t.strip()]
                pairs = [(t, [o for o in terms if o != t], "auto") for t in terms]
            else:
                ins, outs = parse_arrow(entry) if isinstance(entry, str) else (entry.terms, entry.to)
                pairs = [(t.strip(), [o.strip() for o in outs], _case(entry)) for t in ins]
            for term, alternatives, case in pairs:
                key = (normalize(term), case_sensitive(term, case))
                if key not in merged:
                    merged[key] = (term, [], case)
                merged[key][1].extend(a for a in alternatives if a not in merged[key][1])
        return list(merged.values())

    def key(self, text: str) -> str:
        """The comparison form used to drop duplicate variants."""
        return normalize(text, self.convert)

    def rewrites(self, query: str) -> bool:
        """Whether ``query`` gets variants at all: not empty, not too long, variants asked for."""
        cfg = self.cfg
        return cfg.max_variants > 0 and len(query) <= cfg.max_query_chars and bool(query.strip())

    def rewrite(self, query: str, context: str | None = None) -> Rewrite:
        """Up to ``max_variants`` distinct variants of ``query``, most rewritten first."""
        cfg = self.cfg
        if not self.rewrites(query):
            return Rewrite(query)
        text = clean(query, self.convert) if cfg.normalize else scrub(query).strip()
        rules: list[str] = ["normalize"] if text != query.strip() else []
        text, fired = self._standardize(text)
        asked = text  # the question as typed: patterns may strip the words that show it is one
        text, fired_patterns = self._apply_patterns(text)
        rules += fired + fired_patterns
        text, fired = self._entities(text, scrub(context or "").strip() or cfg.context_entity, asked)
        clarified = (text, tuple(rules + fired))
        expanded_text, fired_abbr = self._expand_abbreviations(text)
        expanded = (expanded_text, clarified[1] + tuple(fired_abbr))
        candidates = [expanded, *self._synonym_variants(*expanded), clarified]
        return Rewrite(query, self.distinct(query, [Variant(t, r) for t, r in candidates]))

    def distinct(self, query: str, candidates: list[Variant]) -> tuple[Variant, ...]:
        """Candidates that differ from the query and from each other after normalization, capped."""
        seen = {self.key(query)}
        out: list[Variant] = []
        for v in candidates:
            k = self.key(v.text)
            if not k or k in seen:
                continue
            seen.add(k)
            out.append(v)
            if len(out) == self.cfg.max_variants:
                break
        return tuple(out)

    def _standardize(self, text: str) -> tuple[str, list[str]]:
        tokens = tokenize(text)
        edits: list[tuple[int, int, str]] = []
        fired: list[str] = []
        covered: set[int] = set()
        for m in self._replace.find(tokens, text):
            edits.append((tokens[m.first].start, tokens[m.last].end, m.value))
            fired.append(f"replace:{m.term}")
            covered.update(range(m.first, m.last + 1))
        for i, t in enumerate(tokens):
            if i in covered or t.kind != "word":
                continue
            new = self._wildcard(t)
            if new is not None:
                edits.append((t.start, t.end, new[0]))
                fired.append(f"replace:{new[1]}")
        if not edits:
            return text, []
        return splice(text, sorted(edits)), fired

    def _wildcard(self, t: Token) -> tuple[str, str] | None:
        key = t.key
        for prefix, out in self._prefixes:
            if key.startswith(prefix) and key != prefix:
                return out + t.text[len(prefix) :], f"{prefix}*"
        for suffix, out in self._suffixes:
            if key.endswith(suffix) and key != suffix:
                return t.text[: len(t.text) - len(suffix)] + out, f"*{suffix}"
        return None

    def _apply_patterns(self, text: str) -> tuple[str, list[str]]:
        fired = []
        for i, p in enumerate(self._patterns):
            new = " ".join(p.sub(text).split())
            if new != text and new:
                fired.append(f"pattern:{i}")
                text = new
        return text, fired

    def _entities(self, text: str, entity: str | None, asked: str) -> tuple[str, list[str]]:
        if not entity or self.key(entity) in self.key(text):
            return text, []
        tokens = tokenize(text)
        edits = []
        for m in self._pronouns.find(tokens, text):
            if m.term.isupper() and len(m.term) > 1:
                continue  # "IT" is an abbreviation, not a pronoun
            following = tokens[m.last + 1] if m.last + 1 < len(tokens) else None
            if m.value and following is not None and following.key not in _AUX:
                continue
            edits.append((tokens[m.first].start, tokens[m.last].end, entity))
        if edits:
            return splice(text, edits), [f"entity:{text[s:e]}" for s, e, _ in edits]
        if self.cfg.append_entity and self._objectless(asked):
            return f"{text} {entity}", ["entity:append"]
        return text, []

    def _objectless(self, text: str) -> bool:
        tokens = tokenize(text)
        fillers = self._fillers.find(tokens, text)
        if not fillers:
            return False
        skipped = {i for m in fillers for i in range(m.first, m.last + 1)}
        rest = [t for i, t in enumerate(tokens) if i not in skipped and t.kind != "punct"]
        words = sum(1 for t in rest if t.kind == "word") + (sum(1 for t in rest if t.kind == "cjk") + 1) // 2
        return words <= 1

    def _expand_abbreviations(self, text: str) -> tuple[str, list[str]]:
        tokens = tokenize(text)
        matches = self._abbreviations.find(tokens, text)
        if not matches:
            return text, []
        edits = [
            (tokens[m.first].start, tokens[m.last].end, _unrepeated(m.value, tokens[m.last + 1 :]))
            for m in matches
        ]
        return splice(text, edits), [f"abbreviation:{m.term}" for m in matches]

    def _synonym_variants(self, text: str, rules: tuple[str, ...]) -> list[tuple[str, tuple[str, ...]]]:
        tokens = tokenize(text)
        out = []
        for m in self._synonyms.find(tokens, text):
            span = (tokens[m.first].start, tokens[m.last].end)
            for alternative in m.value:
                new = splice(text, [(*span, alternative)])
                out.append((new, (*rules, f"synonym:{m.term}=>{alternative}")))
        return out


def _unrepeated(expansion: str, following: list[Token]) -> str:
    """The expansion without the words at its end that the text goes on with ("LoRA adapter"
    with LoRA: "LoRA low-rank adapter", not "LoRA low-rank adapter adapter")."""
    words = tokenize(expansion)
    after = [t.key for t in following[: len(words)]]
    for k in range(len(words) - 1, 0, -1):
        if [w.key for w in words[-k:]] == after[:k]:
            return expansion[: words[-k].start].rstrip()
    return expansion
