"""The bi-encoder backend: real loading from a saved model, pooling, the cache, the inference thread."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sidecar.engine.bi_encoder import BiEncoderBackend
from sidecar.engine.cache import LRUCache
from sidecar.engine.models import resolve_model
from sidecar.engine.protocol import Backend


def test_loads_a_saved_model_and_scores_by_cosine(tiny_bert_dir: Path) -> None:
    backend = BiEncoderBackend(str(tiny_bert_dir), device="cpu", max_length=64, batch_size=2)
    assert isinstance(backend, Backend)
    docs = ["choosing a lora rank", "free shipping threshold", "java primitive types"]
    scores = backend.score("lora rank", docs)
    assert len(scores) == 3 and all(-1.0001 <= s <= 1.0001 for s in scores)
    q = backend.embed(["lora rank"])[0]
    d = backend.embed(docs)
    assert torch.allclose(d.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert scores == pytest.approx((d @ q).tolist(), abs=1e-6)
    # Same text, same embedding, whatever the batch it came in with (padding does not leak in).
    alone = backend._encode([docs[0]])[0]
    assert torch.allclose(alone, d[0], atol=1e-5)


def test_cache_serves_repeated_documents(tiny_bert_dir: Path) -> None:
    backend = BiEncoderBackend(str(tiny_bert_dir), device="cpu", cache_size=10)
    backend.score("q", ["a b", "c d"])
    misses = backend.cache.misses
    backend.score("q", ["a b", "c d"])
    assert backend.cache.misses == misses
    assert backend.cache.hits >= 3


def test_lru_cache_evicts_the_oldest() -> None:
    cache: LRUCache[int] = LRUCache(2)
    cache.put(b"a", 1)
    cache.put(b"b", 2)
    assert cache.get(b"a") == 1
    cache.put(b"c", 3)
    assert cache.get(b"b") is None and cache.get(b"a") == 1 and len(cache) == 2


def test_minilm_resolves_to_the_packaged_weights_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = Path(resolve_model("all-MiniLM-L6-v2"))
    assert (path / "config.json").is_file() or str(path) == "sentence-transformers/all-MiniLM-L6-v2"
    assert resolve_model("some-org/some-model") == "some-org/some-model"


def test_real_minilm_ranks_the_relevant_document_first() -> None:
    backend = BiEncoderBackend("all-MiniLM-L6-v2", device="cpu")
    docs = [
        "Items can be returned within 30 days for a refund.",
        "Set the LoRA rank to 8 or 16 for fine-tuning.",
        "Java has eight primitive types.",
    ]
    scores = backend.score("which lora rank should I use", docs)
    assert max(range(3), key=lambda i: scores[i]) == 1
