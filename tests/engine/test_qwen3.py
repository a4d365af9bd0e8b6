"""Qwen3-Reranker: the fast path scores exactly as the model card's code does."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from sidecar.engine.qwen3 import DEFAULT_INSTRUCTION, PREFIX, SUFFIX, Qwen3Reranker, format_instruction
from testkit.qwen3_card import CardReranker
from tests.conftest import CORPUS

DOCS = [f"{d['title']}. {d['text']}" for d in CORPUS]


@pytest.fixture(scope="module")
def ours(tiny_qwen3_dir: Path) -> Qwen3Reranker:
    return Qwen3Reranker(str(tiny_qwen3_dir), device="cpu")


@pytest.fixture(scope="module")
def card(tiny_qwen3_dir: Path) -> CardReranker:
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen3_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen3_dir).eval()
    return CardReranker(model, tokenizer)


def test_prompt_matches_the_card_byte_for_byte() -> None:
    assert PREFIX == (
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
        'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
    )
    assert SUFFIX == "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    assert DEFAULT_INSTRUCTION == "Given a web search query, retrieve relevant passages that answer the query"
    assert (
        format_instruction(None, "q", "d") == f"<Instruct>: {DEFAULT_INSTRUCTION}\n<Query>: q\n<Document>: d"
    )


def test_inputs_are_the_cards(ours: Qwen3Reranker, card: CardReranker) -> None:
    for doc in DOCS[:5]:
        ids, types = ours.encode("lora rank", [doc], None)[0][0]
        expected = card.process_inputs([format_instruction(None, "lora rank", doc)])["input_ids"][0].tolist()
        assert ids == expected and types is None
        assert ours.tokenizer.decode(ids) == PREFIX + format_instruction(None, "lora rank", doc) + SUFFIX


def test_scores_equal_the_card_pair_by_pair(ours: Qwen3Reranker, card: CardReranker) -> None:
    for instruction in (None, "Find the passage that answers the question"):
        fast = ours.score("what LoRA rank should I use", DOCS, instruction)
        for doc, got in zip(DOCS, fast, strict=True):
            want = card.score("what LoRA rank should I use", [doc], instruction)[0]
            assert got == pytest.approx(want, abs=1e-5)


def test_scores_do_not_depend_on_the_batch(ours: Qwen3Reranker) -> None:
    alone = [ours.score("gpu memory", [d])[0] for d in DOCS[:6]]
    together = ours.score("gpu memory", DOCS[:6])
    mixed = ours.forward(
        [e for chunks in ours.encode("gpu memory", [*DOCS[:6], "x " * 300], None) for e in chunks]
    )[:6]
    assert together == pytest.approx(alone, abs=1e-5)
    assert mixed == pytest.approx(alone, abs=1e-5)


def test_truncation_cuts_the_document_never_the_suffix(tiny_qwen3_dir: Path) -> None:
    short = Qwen3Reranker(str(tiny_qwen3_dir), device="cpu", max_length=120)
    long_doc = " ".join(DOCS)
    ids, _ = short.encode("lora rank", [long_doc], None)[0][0]
    assert len(ids) == 120
    assert ids[: len(short.prefix_ids)] == short.prefix_ids
    assert ids[-len(short.suffix_ids) :] == short.suffix_ids
    text = short.tokenizer.decode(ids)
    assert "<Query>: lora rank\n<Document>: " in text


def test_chunking_scores_the_best_chunk(tiny_qwen3_dir: Path, ours: Qwen3Reranker) -> None:
    chunked = Qwen3Reranker(
        str(tiny_qwen3_dir), device="cpu", long_docs="chunk", chunk_tokens=24, max_chunks=4
    )
    doc = " ".join(DOCS[:4])
    pieces = chunked.documents_as_chunks([doc])[0]
    assert 2 <= len(pieces) <= 4
    best = max(ours.score("lora rank", pieces))
    assert chunked.score("lora rank", [doc])[0] == pytest.approx(best, abs=1e-5)


def test_the_instruction_is_part_of_the_score(ours: Qwen3Reranker) -> None:
    a = ours.score("lora rank", DOCS[:3])
    b = ours.score("lora rank", DOCS[:3], "Retrieve shipping policies")
    assert a != pytest.approx(b, abs=1e-7)
