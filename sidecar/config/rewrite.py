"""The ``rewrite`` block of a route, and the rules file it may name: pydantic models."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sidecar.language import keyed
from sidecar.patterns import compile_pattern

Case = Literal["auto", "sensitive", "insensitive"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Abbreviation(_Model):
    """``k8s: {expand: Kubernetes, case: insensitive}``."""

    expand: str = Field(min_length=1)
    # auto: a key written in capitals only (IT, OOM) matches only in capitals; others in any case
    case: Case = "auto"


class OneWaySynonym(_Model):
    """Each of ``terms`` gets a variant with each of ``to``; not the other way round."""

    terms: list[str] = Field(min_length=1)
    to: list[str] = Field(min_length=1)
    case: Case = "auto"


class PatternRule(_Model):
    """An ordered regex rewrite: ``match`` (RE2 syntax) replaced by ``replace`` (\\1, \\g<name>)."""

    match: str = Field(min_length=1)
    replace: str = ""
    case: Literal["sensitive", "insensitive"] = "insensitive"


def _check_pattern(rule: PatternRule) -> PatternRule:
    compile_pattern(rule.match, rule.replace, case_sensitive=rule.case == "sensitive")
    return rule


def parse_arrow(text: str) -> tuple[list[str], list[str]]:
    """``a, b => c, d``: the inputs and the outputs; ValueError without exactly one ``=>``."""
    if text.count("=>") != 1:
        raise ValueError(f"expected 'input => output', got {text!r}")
    left, right = text.split("=>")
    ins = [t.strip() for t in left.split(",") if t.strip()]
    outs = [t.strip() for t in right.split(",") if t.strip()]
    if not ins or not outs:
        raise ValueError(f"expected terms on both sides of '=>', got {text!r}")
    return ins, outs


class RewriteRules(_Model):
    """The rule keys, inline in a route's ``rewrite`` block or in the rules file it names."""

    # NFKC (full-width to half-width), whitespace and CJK punctuation cleanup before the rules
    normalize: bool = True
    # simplified: traditional Chinese converted with OpenCC (pip install 'rerank-sidecar[zh]')
    chinese: Literal["keep", "simplified"] = "keep"
    abbreviations: dict[str, str | Abbreviation] = Field(default_factory=dict)
    # a list of terms is a two-way group; "a, b => c" or {terms, to} is one way
    synonyms: list[list[str] | str | OneWaySynonym] = Field(default_factory=list)
    # term standardization and misspellings: "pytorh: pytorch"; "colour*: color*" and "*isation: *ization"
    replace: dict[str, str] = Field(default_factory=dict)
    context_entity: str | None = None
    # replaced by the context entity; None: it, this, that, 它, 这个, 那个
    pronouns: list[str] | None = None
    # a query with no object ("怎么配置", "how to restart") gets the context entity appended
    append_entity: bool = True
    patterns: list[str | PatternRule] = Field(default_factory=list)
    # rule keys that apply only to queries in one language (its script: zh, ja, ko, latin, ...;
    # see sidecar/language.py), besides the ones above: "zh: {synonyms: [[重启, reboot]]}"
    by_language: dict[str, RewriteRules] = Field(default_factory=dict)

    @field_validator("by_language")
    @classmethod
    def _by_language(cls, v: dict[str, RewriteRules]) -> dict[str, RewriteRules]:
        for code, rules in v.items():
            if rules.by_language:
                raise ValueError(f"{code}: by_language inside by_language")
        return keyed(v)

    def for_language(self, language: str) -> Self:
        """These rules with the ones of ``language`` added: maps merged (the language's win),
        lists joined, its scalars where it sets them."""
        extra = self.by_language.get(language)
        if extra is None:
            return self
        update: dict[str, Any] = {"by_language": {}}
        for name in RewriteRules.model_fields:
            if name == "by_language":
                continue
            mine, theirs = getattr(self, name), getattr(extra, name)
            if isinstance(mine, dict):
                update[name] = {**mine, **theirs}
            elif isinstance(mine, list):
                update[name] = [*mine, *theirs]
            elif name in extra.model_fields_set:
                update[name] = theirs
        return self.model_copy(update=update)

    @field_validator("abbreviations", "replace")
    @classmethod
    def _keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key, value in v.items():
            if not key.strip():
                raise ValueError("empty key")
            if isinstance(value, str) and not value.strip():
                raise ValueError(f"{key}: empty value")
        return v

    @field_validator("replace")
    @classmethod
    def _wildcards(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            k, out = key.strip(), value.strip()
            if "*" in k.strip("*") or k.count("*") > 1:
                raise ValueError(f"{key}: '*' only at the start (suffix) or end (prefix) of a term")
            if k.startswith("*") != out.startswith("*") or k.endswith("*") != out.endswith("*"):
                raise ValueError(f"{key}: {value!r} must carry '*' where the key does")
            if k.strip("*") == "":
                raise ValueError(f"{key}: a wildcard needs some text")
        return v

    @field_validator("synonyms")
    @classmethod
    def _synonyms(cls, v: list[Any]) -> list[Any]:
        for i, entry in enumerate(v):
            if isinstance(entry, str):
                try:
                    parse_arrow(entry)
                except ValueError as e:
                    raise ValueError(f"{i}: {e}") from None
            elif isinstance(entry, list):
                terms = [t for t in entry if t.strip()]
                if len(terms) < 2:
                    raise ValueError(f"{i}: a synonym group needs two terms or more")
        return v

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, v: list[Any]) -> list[Any]:
        for i, entry in enumerate(v):
            try:
                _check_pattern(as_pattern(entry))
            except ValueError as e:
                raise ValueError(f"{i}: {e}") from None
        return v


def as_pattern(entry: str | PatternRule) -> PatternRule:
    """The rule of a ``"match => replace"`` string or a mapping."""
    if isinstance(entry, PatternRule):
        return entry
    if " => " not in entry:
        raise ValueError(f"expected 'regex => replacement', got {entry!r}")
    match, _, replace = entry.partition(" => ")
    return PatternRule(match=match.strip(), replace=replace.strip())


class LlmRewriteConfig(_Model):
    """An OpenAI-compatible chat endpoint that writes variants; the rules are the fallback."""

    url: str  # base URL, e.g. http://gpu-1:8000 (POST {url}/v1/chat/completions)
    model: str
    timeout_ms: int = Field(800, ge=1)
    api_key_env: str | None = None  # env var holding a bearer key
    prompt: str | None = None  # the system prompt; {n} and {context} are filled in
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(256, ge=16)
    cache_size: int = Field(10_000, ge=0)
    extra_body: dict[str, Any] = Field(default_factory=dict)  # e.g. chat_template_kwargs for Qwen3

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {v!r}")
        return v.rstrip("/")


class RewriteConfig(RewriteRules):
    """A route's query rewriting: rules, how many variants, and how each stage uses them."""

    max_variants: int = Field(3, ge=0, le=16)
    # expanded: the clause carrying the query text becomes bool.should of it and one clause per variant
    retrieval: Literal["original", "expanded"] = "expanded"
    variant_boost: float = Field(0.5, ge=0)
    aggregate: Literal["max", "mean", "weighted"] = "max"
    original_weight: float = Field(0.5, ge=0, le=1)  # weighted: the original's share, the rest to variants
    rules: str | None = None  # a YAML file with any of the rule keys, relative to the config file
    max_query_chars: int = Field(1000, ge=1)  # longer queries are not rewritten
    llm: LlmRewriteConfig | None = None
