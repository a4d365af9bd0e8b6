"""The bi-encoder backend: real loading from a saved model, pooling, the cache, the inference thread."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sidecar.engine.batcher import Batcher
from sidecar.engine.bi_encoder import BiEncoderBackend
from sidecar.engine.cache import LocalLRU, LRUCache
from sidecar.engine.models import resolve_model
from sidecar.engine.protocol import Backend, GroupBackend
from tests.conftest import CORPUS
from tests.engine.scoring import scores_of


def test_loads_a_saved_model_and_scores_by_cosine(tiny_bert_dir: Path) -> None:
    backend = BiEncoderBackend(str(tiny_bert_dir), device="cpu", max_length=64, batch_size=2)
    assert isinstance(backend, Backend)
    docs = ["choosing a lora rank", "free shipping threshold", "java primitive types"]
    scores = backend.score("lora rank", docs)
    assert len(scores) == 3 and all(-1.0001 <= s <= 1.0001 for s in scores)
    q = backend.embed(["lora rank"])[0][0]
    d = np.concatenate(backend.embed(docs))
    assert np.allclose(np.linalg.norm(d, axis=-1), np.ones(3), atol=1e-5)
    assert scores == pytest.approx((d @ q).tolist(), abs=1e-6)
    # Same text, same embedding, whatever the batch it came in with (padding does not leak in).
    alone = backend._encode(backend._pieces(docs[0], chunk=False))[0]
    assert np.allclose(alone, d[0], atol=1e-5)
    # and the same as the tokenizer's own encoding of the text, through torch
    batch = backend.tokenizer([docs[0]], return_tensors="pt")
    with torch.inference_mode():
        hidden = backend.model(**batch).last_hidden_state
    assert np.allclose(torch.nn.functional.normalize(hidden.mean(1), dim=-1)[0].numpy(), alone, atol=1e-5)


def test_long_documents_are_scored_by_their_best_chunk(tiny_bert_dir: Path) -> None:
    backend = BiEncoderBackend(str(tiny_bert_dir), device="cpu", max_length=16, chunk=True, max_chunks=4)
    words = [f"w{i}" for i in range(200)]
    long_doc = " ".join(words)
    pieces = backend._pieces(long_doc, chunk=True)
    assert len(pieces) == 4 and all(len(p) == backend.window for p in pieces)
    stride = backend.window * 3 // 4
    assert pieces[1][: backend.window - stride] == pieces[0][stride:]  # windows overlap by a quarter
    chunks = backend.embed([long_doc], chunk=True)[0]
    assert chunks.shape[0] == 4
    q = backend.embed(["w3 w4"])[0][0]
    assert backend.score("w3 w4", [long_doc])[0] == pytest.approx(float((chunks @ q).max()), abs=1e-6)
    short = backend.embed(["w1 w2"], chunk=True)[0]
    assert short.shape[0] == 1  # a text within the window is one chunk


def test_every_chunk_carries_the_documents_first_line(tiny_bert_dir: Path) -> None:
    backend = BiEncoderBackend(str(tiny_bert_dir), device="cpu", max_length=64, chunk=True, chunk_tokens=16)

    def ids(text: str) -> list[int]:
        return list(backend.tokenizer(text, add_special_tokens=False)["input_ids"])

    title, body = "gpu memory fraction", " ".join(d["text"] for d in CORPUS[4:9])
    pieces = backend._pieces(f"{title}\n{body}", chunk=True)
    assert backend.chunk_window == 14 and len(pieces) > 3 and len(ids(title)) == 3
    assert all(p[:3] == ids(title) and len(p) <= 14 for p in pieces)
    stride = (14 - 3) * 3 // 4
    assert [p[3:] for p in pieces] == [ids(body)[s : s + 11] for s in range(0, stride * len(pieces), stride)]
    assert pieces[-1][-1] == ids(body)[-1]  # to the end of the body
    # no first line, or one longer than half a chunk: plain windows of the whole text
    assert backend._pieces(body, chunk=True)[1] == ids(body)[10:24]
    long_title = CORPUS[0]["text"]
    assert backend._pieces(f"{long_title}\n{body}", chunk=True)[0] == ids(f"{long_title}\n{body}")[:14]
    # a short document is one piece, whole
    assert backend._pieces(f"{title}\nlora rank", chunk=True) == [ids(f"{title}\nlora rank")]


def test_the_embedding_store_keeps_documents_across_restarts(tiny_bert_dir: Path, tmp_path: Path) -> None:
    store = tmp_path / "emb.sqlite"
    docs = ["a long text " * 30, "short one"]
    first = BiEncoderBackend(str(tiny_bert_dir), device="cpu", max_length=16, chunk=True, store=str(store))
    scores = first.score("query", docs)
    assert first.encoded == 3  # the query and two documents
    again = BiEncoderBackend(str(tiny_bert_dir), device="cpu", max_length=16, chunk=True, store=str(store))
    assert again.score("query", docs) == pytest.approx(scores, abs=1e-6)
    assert again.encoded == 0  # all from the file
    other = BiEncoderBackend(str(tiny_bert_dir), device="cpu", max_length=32, chunk=True, store=str(store))
    other.score("query", docs)
    assert other.encoded == 3  # another truncation: other keys


def test_an_unwritable_store_is_skipped(tiny_bert_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite").mkdir()  # a directory where the file should be
    backend = BiEncoderBackend(str(tiny_bert_dir), device="cpu", store=str(tmp_path / "dir.sqlite"))
    assert len(backend.score("q", ["a", "b"])) == 2
    assert backend.store is not None and backend.store.failed


def test_cache_serves_repeated_documents(tiny_bert_dir: Path) -> None:
    backend = BiEncoderBackend(str(tiny_bert_dir), device="cpu", cache_size=10)
    backend.score("q", ["a b", "c d"])
    misses = backend.cache.misses
    backend.score("q", ["a b", "c d"])
    assert backend.cache.misses == misses
    assert backend.cache.hits >= 3


@pytest.mark.parametrize("kind", [LRUCache, LocalLRU])
def test_lru_cache_evicts_the_oldest(kind: type[LRUCache[int]] | type[LocalLRU[int]]) -> None:
    cache = kind(2)
    cache.put(b"a", 1)
    cache.put(b"b", 2)
    assert cache.get(b"a") == 1
    cache.put(b"c", 3)
    assert cache.get(b"b") is None and cache.get(b"a") == 1 and len(cache) == 2
    assert (cache.hits, cache.misses) == (2, 1)
    off = kind(0)
    off.put(b"a", 1)
    assert off.get(b"a") is None and len(off) == 0


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


def test_several_queries_at_once_score_as_each_alone(tiny_bert_dir: Path) -> None:
    backend = BiEncoderBackend(str(tiny_bert_dir), device="cpu", max_length=64, chunk=True, chunk_tokens=16)
    docs = ["gpu memory " * 30, "lora rank", "", "shipping rates to norway and sweden " * 5]
    queries = ["gpu memory", "which lora rank", "parcel to norway"]
    together = backend.score_many(queries, docs)
    alone = [
        BiEncoderBackend(str(tiny_bert_dir), device="cpu", max_length=64, chunk=True, chunk_tokens=16).score(
            q, docs
        )
        for q in queries
    ]
    assert len(together) == 3 and all(len(row) == len(docs) for row in together)
    for row, ref in zip(together, alone, strict=True):
        assert row == pytest.approx(ref, abs=1e-6)
    assert backend.score_many(queries, []) == [[], [], []]


def test_searches_together_score_as_each_alone(tiny_bert_dir: Path) -> None:
    backend = BiEncoderBackend(str(tiny_bert_dir), device="cpu", max_length=64, chunk=True, chunk_tokens=16)
    assert isinstance(backend, GroupBackend)
    searches = [
        (["gpu memory", "graphics memory"], ["gpu memory " * 30, "lora rank"], None),
        (["which lora rank"], ["lora rank", "shipping rates to norway and sweden " * 5, "lora rank"], None),
        (["nothing to score"], [], None),
        (["gpu memory"], ["lora rank"], None),  # a query another search asked too
    ]
    together = backend.score_group(searches)
    fresh = BiEncoderBackend(str(tiny_bert_dir), device="cpu", max_length=64, chunk=True, chunk_tokens=16)
    for got, (queries, docs, _) in zip(together, searches, strict=True):
        assert got == [pytest.approx(row, abs=1e-6) for row in fresh.score_many(queries, docs)]
    # every text the searches named was embedded once, in one pass
    assert backend.encoded == len({"gpu memory", "graphics memory", "which lora rank"}) + 3


async def test_concurrent_searches_share_the_bi_encoders_forward_passes(tiny_bert_dir: Path) -> None:
    backend = BiEncoderBackend(str(tiny_bert_dir), device="cpu", max_length=64)
    gate = threading.Event()
    real = backend.score_group

    def gated(requests: Any) -> Any:
        gate.wait(10)  # the first pass holds the thread while the other searches queue
        return real(requests)

    backend.score_group = gated  # type: ignore[method-assign]
    b = Batcher("m", lambda: backend, max_wait_ms=1)
    await b.start()
    try:
        docs = [f"document {i} about gpu memory" for i in range(6)]
        first = asyncio.ensure_future(scores_of(b, "first search", docs, None, 10.0))
        await asyncio.sleep(0.1)
        rest = [asyncio.ensure_future(scores_of(b, f"search {i}", docs, None, 10.0)) for i in range(7)]
        await asyncio.sleep(0.1)
        gate.set()
        got = await asyncio.gather(first, *rest)
        alone = BiEncoderBackend(str(tiny_bert_dir), device="cpu", max_length=64)
        queries = ["first search"] + [f"search {i}" for i in range(7)]
        assert got == [pytest.approx(alone.score(q, docs), abs=1e-6) for q in queries]
        assert b.stats.forwards == 2 and b.stats.forward_queries == 8  # one, then the seven together
        assert b.info()["queries_per_forward"] == 4.0
    finally:
        await b.aclose()


async def test_a_failed_pass_reaches_the_searches_in_it_and_the_next_pass_serves(tiny_bert_dir: Path) -> None:
    backend = BiEncoderBackend(str(tiny_bert_dir), device="cpu", max_length=64)
    real = backend.score_group
    calls = 0

    def failing_once(requests: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("out of memory")
        return real(requests)

    backend.score_group = failing_once  # type: ignore[method-assign]
    b = Batcher("m", lambda: backend, max_wait_ms=1)
    await b.start()
    try:
        assert len(await scores_of(b, "one", ["a doc"], None, 10.0)) == 1
        with pytest.raises(RuntimeError, match="out of memory"):
            await scores_of(b, "two", ["a doc"], None, 10.0)
        assert len(await scores_of(b, "three", ["a doc"], None, 10.0)) == 1
    finally:
        await b.aclose()
