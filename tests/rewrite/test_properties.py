"""Properties over arbitrary Unicode: never a crash, the original kept, bounded, idempotent, linear."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.config.rewrite import RewriteConfig
from sidecar.rewrite.load import chinese_converter
from sidecar.rewrite.rules import Rewriter
from sidecar.rewrite.text import normalize, tokenize

# every code point, lone surrogates included: JSON bodies can carry them as \ud800 escapes
ANY_TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, categories=None), max_size=80)
MIXED = st.lists(
    st.sampled_from(
        list("ab 它？。，ＡＢ１ -_.'\"\t\n") + "k8s it this 这个 显存 GPU memory 怎么 fp16 LoRA".split()
    ),
    max_size=30,
).map("".join)

RULES = RewriteConfig(
    max_variants=3,
    abbreviations={"k8s": "Kubernetes", "LoRA": "Low-Rank Adaptation", "显存": "GPU memory"},
    synonyms=[["显存", "GPU memory"], ["fp16", "half precision"], "it => IT"],
    replace={"colour*": "color*", "*isation": "*ization", "teh": "the"},
    patterns=[r"^how (?:do|can) i (.+)$ => \1", r"^(.+?)是什么$ => \1 定义"],
    context_entity="Qwen3-Reranker-0.6B",
    chinese="simplified",
)
REWRITER = Rewriter(RULES, chinese_converter("simplified"))


@given(ANY_TEXT | MIXED, st.none() | ANY_TEXT)
@settings(max_examples=400, deadline=None)
def test_rewriting_never_crashes_and_keeps_to_its_bounds(query: str, context: str | None) -> None:
    rw = REWRITER.rewrite(query, context)
    assert rw.query == query  # the original is kept as it came
    assert len(rw.variants) <= RULES.max_variants
    keys = [REWRITER.key(v.text) for v in rw.variants]
    assert len(set(keys)) == len(keys)
    assert REWRITER.key(query) not in keys
    assert all(v.text.strip() and v.rules for v in rw.variants)
    assert REWRITER.rewrite(query, context) == rw  # deterministic


@given(ANY_TEXT | MIXED)
@settings(max_examples=400, deadline=None)
def test_normalization_is_idempotent(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once
    convert = chinese_converter("simplified")
    once = normalize(text, convert)
    assert normalize(once, convert) == once


@given(ANY_TEXT | MIXED)
@settings(max_examples=200, deadline=None)
def test_tokens_cover_every_non_space_character_in_order(text: str) -> None:
    tokens = tokenize(text)
    assert "".join(t.text for t in tokens) == "".join(c for c in text if not c.isspace())
    assert all(text[t.start : t.end] == t.text for t in tokens)


def test_a_catastrophic_pattern_runs_in_linear_time() -> None:
    # Python's re takes ~2**n steps on these; RE2 answers at once (bench/rewrite_speed.py measures it)
    r = Rewriter(RewriteConfig(patterns=["^(a+)+$ => x", r"^(\w+\s?)*$ => y"]))
    assert r.rewrite("a" * 60 + "-b").variants == ()
