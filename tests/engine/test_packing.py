"""Packed batches (one sequence per forward pass, no padding) give the padded path's scores,
on the random-weight Qwen3 reranker and cross-encoders (BERT- and XLM-R-style), in fp32."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from sidecar.engine.batcher import Batcher
from sidecar.engine.cross_encoder import CrossEncoderBackend
from sidecar.engine.pairs import token_batches
from sidecar.engine.qwen3 import Qwen3Reranker
from tests.conftest import CORPUS
from tests.engine.scoring import scores_of

QUERIES = ["lora rank", "what happens when the gpu runs out of memory during training", "java"]
DOCS = [f"{d['title']} {d['text']}" for d in CORPUS] + ["short", "x " * 120]


def _pairs(backend: Qwen3Reranker | CrossEncoderBackend) -> list[list[float]]:
    return [backend.score(q, DOCS, "Judge relevance") for q in QUERIES]


def test_qwen3_packed_equals_padded(tiny_qwen3_dir: Path) -> None:
    padded = Qwen3Reranker(str(tiny_qwen3_dir), device="cpu", dtype="float32", packing="off")
    packed = Qwen3Reranker(str(tiny_qwen3_dir), device="cpu", dtype="float32", packing="on", batch_tokens=700)
    assert packed.packed and not padded.packed
    for a, b in zip(_pairs(padded), _pairs(packed), strict=True):
        assert a == pytest.approx(b, abs=1e-5)
    # a whole batch in one forward pass against one input at a time
    encoded = [e for chunks in packed.encode(QUERIES[1], DOCS, None) for e in chunks]
    together = packed.forward(encoded)
    alone = [padded.forward([e])[0] for e in encoded]
    assert together == pytest.approx(alone, abs=1e-5)


def test_auto_packs_only_where_varlen_kernels_are(tiny_qwen3_dir: Path) -> None:
    assert not Qwen3Reranker(str(tiny_qwen3_dir), device="cpu", packing="auto").packed  # SDPA on the CPU


def test_cross_encoder_packed_equals_padded(tiny_cross_encoder_dir: Path) -> None:
    padded = CrossEncoderBackend(str(tiny_cross_encoder_dir), device="cpu", dtype="float32", packing="off")
    packed = CrossEncoderBackend(str(tiny_cross_encoder_dir), device="cpu", dtype="float32", packing="on")
    for a, b in zip(_pairs(padded), _pairs(packed), strict=True):
        assert a == pytest.approx(b, abs=1e-5)


def test_xlm_roberta_cross_encoder_packed_equals_padded(tiny_cross_encoder_dir: Path, tmp_path: Path) -> None:
    """RoBERTa-style models count positions from after the padding index: packing must too."""
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    folder = tmp_path / "xlmr"
    shutil.copytree(tiny_cross_encoder_dir, folder)
    for f in folder.glob("*.safetensors"):
        f.unlink()
    (folder / "config.json").unlink()
    vocab = len((folder / "vocab.txt").read_text().splitlines())
    config = XLMRobertaConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=520,
        pad_token_id=0,
        type_vocab_size=2,  # the WordPiece tokenizer of the folder gives pair types
        num_labels=1,
    )
    torch.manual_seed(1)
    XLMRobertaForSequenceClassification(config).save_pretrained(folder)
    padded = CrossEncoderBackend(str(folder), device="cpu", dtype="float32", packing="off")
    packed = CrossEncoderBackend(str(folder), device="cpu", dtype="float32", packing="on")
    assert packed._family() == "roberta"
    for a, b in zip(_pairs(padded), _pairs(packed), strict=True):
        assert a == pytest.approx(b, abs=1e-5)


async def test_the_batcher_runs_packed_batches_with_no_padding(tiny_qwen3_dir: Path) -> None:
    backend = Qwen3Reranker(str(tiny_qwen3_dir), device="cpu", dtype="float32", packing="on")
    reference = backend.score(QUERIES[0], DOCS)
    b = Batcher("q", lambda: backend, batch_tokens=600, max_wait_ms=0)
    await b.start()
    try:
        got = await scores_of(b, QUERIES[0], DOCS, None, 30.0)
    finally:
        b.stop()
    assert got == pytest.approx(reference, abs=1e-6)
    assert b.stats.padding_waste == 0.0 and b.stats.batches >= 2


def test_a_packed_budget_counts_real_tokens() -> None:
    lengths = [10, 10, 10, 100]
    assert list(token_batches(lengths, 130, packed=True)) == [[0, 1, 2, 3]]  # 130 real tokens
    assert list(token_batches(lengths, 130)) != [[0, 1, 2, 3]]  # 400 padded tokens would not fit
