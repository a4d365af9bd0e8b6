"""Bi-encoder backend: mean-pooled, normalized embeddings and cosine scores."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from sidecar.engine import onnx_runtime
from sidecar.engine.cache import LocalLRU, text_key
from sidecar.engine.embedding_store import EmbeddingStore
from sidecar.engine.models import pick_device, resolve_model


class BiEncoderBackend(onnx_runtime.Placed):
    """Scores a document by the cosine of its embedding with the query's; a long document, split
    into overlapping chunks that each carry its title, by its best chunk."""

    def __init__(
        self,
        model: str,
        *,
        name: str = "bi-encoder",
        device: str = "auto",
        max_length: int = 256,
        batch_size: int = 32,
        cache_size: int = 50_000,
        store: str | None = None,
        chunk: bool = False,
        chunk_tokens: int = 128,
        max_chunks: int = 16,
        runtime: str = "auto",
        threads: int | None = None,
    ) -> None:
        self.name = name
        self.source = resolve_model(model)
        self.device = pick_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(self.source)
        dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.model = AutoModel.from_pretrained(self.source, dtype=dtype).to(self.device).eval()
        self.hidden_size = int(self.model.config.hidden_size)
        self._pooled = _Pooled(self.model).eval()
        limit = getattr(self.tokenizer, "model_max_length", max_length) or max_length
        self.max_length = min(max_length, limit)
        self.tokenizer.model_max_length = 1 << 30  # whole documents are tokenized, then cut here
        # the special tokens around a text ([CLS] ... [SEP]), read off the tokenizer's own output
        plain = self.tokenizer("a", add_special_tokens=False)["input_ids"]
        full = self.tokenizer("a", add_special_tokens=True)["input_ids"]
        at = next(i for i in range(len(full)) if full[i : i + len(plain)] == plain)
        self._prefix, self._suffix = list(full[:at]), list(full[at + len(plain) :])
        self._pad = self.tokenizer.pad_token_id or 0
        self.window = self.max_length - len(self._prefix) - len(self._suffix)
        self.chunk = chunk
        self.chunk_window = max(8, min(self.max_length, chunk_tokens) - len(self._prefix) - len(self._suffix))
        self.max_chunks = max_chunks
        self.batch_size = batch_size
        self.cache: LocalLRU[np.ndarray[Any, Any]] = LocalLRU(cache_size)  # the inference thread's
        # the key namespace: the model's files, the truncation and the chunking change an embedding
        shape = f"{self.source}|{self.max_length}|{chunk and (chunk_tokens, max_chunks, 'heading')}"
        self._ns = hashlib.blake2b(shape.encode(), digest_size=8).hexdigest()
        self.store = EmbeddingStore(store) if store else None
        self.encoded = 0  # texts run through the model (not served by a cache)
        self.placement = onnx_runtime.place(
            name,
            runtime,
            self.device,
            # a pass of one search (nobody else waiting: the machine is idle but for it) runs on
            # every CPU, as bulk passes do; under load, the queries of many searches on ``threads``
            lambda: (
                self._pooled,
                self._batch([p for t in _PROBE for p in self._pieces(t, chunk=False)]),
                "pooled",
                "bi-encoder",
            ),
            threads,
        )

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees, before truncation."""
        return len(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    def warm_up(self) -> None:
        """One small inference, outside the cache."""
        self._encode([self._pieces("warm up", chunk=False)[0]])

    def _tokens(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens: one call of the tokenizer for them all
        (its per-call Python costs more than a short query's tokens)."""
        if not texts:
            return []
        ids: list[list[int]] = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return ids

    def _pieces(self, text: str, *, chunk: bool, ids: list[int] | None = None) -> list[list[int]]:
        """Token ids without special tokens: the text cut to the window; or, in chunk mode, a text
        longer than a chunk as overlapping windows that each begin with its first line (the
        title, when the document text starts with one), so every chunk knows what it is about.
        ``ids``: the text's tokens, where the caller has them."""
        if ids is None:
            ids = self._tokens([text])[0]
        if not chunk:
            return [ids[: self.window]]
        w = self.chunk_window
        if len(ids) <= w:
            return [ids]
        heading: list[int] = []
        first, newline, rest = text.partition("\n")
        if newline and rest.strip():
            first_ids = self.tokenizer(first, add_special_tokens=False)["input_ids"]
            if len(first_ids) <= w // 2:
                heading = first_ids
                ids = self.tokenizer(rest, add_special_tokens=False)["input_ids"]
        room = w - len(heading)
        stride = max(1, room * 3 // 4)
        starts = list(range(0, max(1, len(ids) - room + stride), stride))[: self.max_chunks]
        return [heading + ids[s : s + room] for s in starts]

    def _batch(self, pieces: Sequence[list[int]]) -> dict[str, torch.Tensor]:
        """Token ids with the special tokens, padded to the longest, and their attention mask."""
        inputs = [self._prefix + p + self._suffix for p in pieces]
        width = max(len(x) for x in inputs)
        ids = np.full((len(inputs), width), self._pad, dtype=np.int64)
        mask = np.zeros((len(inputs), width), dtype=np.int64)
        for i, x in enumerate(inputs):
            ids[i, : len(x)] = x
            mask[i, : len(x)] = 1
        return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}

    @torch.inference_mode()
    def _encode(self, pieces: Sequence[list[int]], idle: bool = False) -> np.ndarray[Any, Any]:
        """The normalized embedding of each piece, in batches of ``batch_size`` (fp32, numpy:
        what follows is small, and a torch op would wake torch's CPU threads, which spin on the
        cores that the event loop and ONNX Runtime need). ``idle``: nothing else waits for the
        model (ONNX Runtime then runs it on every CPU, as it does bulk work). With runtime auto
        a bulk batch runs on torch (onnx_runtime.BULK_TOKENS)."""
        out: list[np.ndarray[Any, Any]] = []
        for i in range(0, len(pieces), self.batch_size):
            batch = self._batch(pieces[i : i + self.batch_size])
            onnx, bulk = self.placement.for_batch(batch)
            if onnx is not None:
                out.append(onnx.run({k: v.numpy() for k, v in batch.items()}, idle or bulk))
            else:
                out.append(self._pooled(**{k: v.to(self.device) for k, v in batch.items()}).cpu().numpy())
        return np.concatenate(out) if out else np.empty((0, self.hidden_size), dtype=np.float32)

    def embed(self, texts: Sequence[str], *, chunk: bool = False) -> list[np.ndarray[Any, Any]]:
        """Per text, its normalized embeddings (one row per chunk), through the caches; the
        longest texts are encoded first so batches pad little."""
        return self.embed_all([(t, chunk) for t in texts])

    def embed_all(self, items: Sequence[tuple[str, bool]], idle: bool = False) -> list[np.ndarray[Any, Any]]:
        """``embed`` of texts of both kinds (``(text, chunk)``: queries whole, documents in
        chunks) in one pass: what the caches lack is encoded together, sorted by length
        (``idle``: as ``_encode``'s)."""
        keys = [text_key(self._ns + ("c" if chunk else "q"), t) for t, chunk in items]
        rows = self.cache.get_many(keys)
        if self.store is not None and any(r is None for r in rows):
            stored = self.store.get([keys[i] for i, r in enumerate(rows) if r is None])
            kept = []
            for i, k in enumerate(keys):
                if rows[i] is None and k in stored:
                    vec = stored[k].reshape(-1, self.hidden_size)
                    rows[i] = vec
                    kept.append((k, vec))
            self.cache.put_many(kept)
        first: dict[bytes, int] = {}  # a text asked twice is encoded once
        for i, r in enumerate(rows):
            if r is None:
                first.setdefault(keys[i], i)
        missing = sorted(first.values(), key=lambda i: -len(items[i][0]))
        if missing:
            tokens = self._tokens([items[i][0] for i in missing])
            pieces = [
                self._pieces(items[i][0], chunk=items[i][1], ids=t)
                for i, t in zip(missing, tokens, strict=True)
            ]
            flat = [p for ps in pieces for p in ps]
            order = sorted(range(len(flat)), key=lambda j: -len(flat[j]))  # chunks and texts alike
            fresh = np.empty((len(flat), self.hidden_size), dtype=np.float32)
            fresh[np.array(order, dtype=np.int64)] = self._encode([flat[j] for j in order], idle)
            self.encoded += len(missing)
            made: dict[bytes, np.ndarray[Any, Any]] = {}
            at = 0
            for i, ps in zip(missing, pieces, strict=True):
                made[keys[i]] = fresh[at : at + len(ps)].copy()
                at += len(ps)
            self.cache.put_many(made.items())
            if self.store is not None:
                self.store.put(list(made.items()))
            rows = [r if r is not None else made[k] for r, k in zip(rows, keys, strict=True)]
        return [r for r in rows if r is not None]

    def score(self, query: str, documents: Sequence[str], instruction: str | None = None) -> list[float]:
        """Cosine similarity of each document (its best chunk) with the query."""
        return self.score_many([query], documents, instruction)[0]

    def score_many(
        self, queries: Sequence[str], documents: Sequence[str], instruction: str | None = None
    ) -> list[list[float]]:
        """Per query, each document's cosine (its best chunk): the queries embedded in one pass,
        the documents looked up once, every chunk against every query in one matrix product."""
        return self.score_group([(queries, documents, instruction)])[0]

    def score_group(
        self, requests: Sequence[tuple[Sequence[str], Sequence[str], str | None]]
    ) -> list[list[list[float]]]:
        """``score_many`` of several searches at once: every query and variant of all of them,
        and every document the caches lack, embedded in one pass sorted by length; then each
        search scored with its own matrix product."""
        items: dict[tuple[str, bool], int] = {}
        for queries, documents, _ in requests:
            if documents:
                for query in queries:
                    items.setdefault((query, False), len(items))
                for d in documents:
                    items.setdefault((d, self.chunk), len(items))
        rows = self.embed_all(list(items), idle=len(requests) == 1)  # no other search was waiting
        out: list[list[list[float]]] = []
        for queries, documents, _ in requests:
            if not documents:
                out.append([[] for _ in queries])
                continue
            embedded = np.concatenate([rows[items[(x, False)]] for x in queries])  # (queries, hidden)
            out.append(_best_chunks(embedded, [rows[items[(d, self.chunk)]] for d in documents]))
        return out


# the probe batch that an ONNX export is checked on: lengths apart, so padding is exercised
_PROBE = (
    "what is the capital of france",
    "gpu",
    "How do I restart a pod that keeps running out of memory in a Kubernetes cluster on GPUs?",
)


class _Pooled(torch.nn.Module):
    """The encoder and the backend's head: the attention-masked mean of the last hidden states,
    normalized (in fp32). What torch runs and what is exported to ONNX."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled.float(), dim=-1)


def _best_chunks(q: np.ndarray[Any, Any], rows: list[np.ndarray[Any, Any]]) -> list[list[float]]:
    """Per query, each document's best chunk's cosine, every chunk against every query at once."""
    sims = np.concatenate(rows) @ q.T  # (chunks of all documents, queries)
    starts = np.zeros(len(rows), dtype=np.int64)  # each document's first chunk
    np.cumsum([len(r) for r in rows[:-1]], out=starts[1:])
    result: list[list[float]] = np.maximum.reduceat(sims, starts, axis=0).T.tolist()
    return result
