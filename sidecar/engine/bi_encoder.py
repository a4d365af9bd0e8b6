"""Bi-encoder backend: mean-pooled, normalized embeddings and cosine scores."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

import torch
from transformers import AutoModel, AutoTokenizer

from sidecar.engine.cache import LRUCache, text_key
from sidecar.engine.embedding_store import EmbeddingStore
from sidecar.engine.models import pick_device, resolve_model

log = logging.getLogger(__name__)


class BiEncoderBackend:
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
    ) -> None:
        self.name = name
        self.source = resolve_model(model)
        self.device = pick_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(self.source)
        dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.model = AutoModel.from_pretrained(self.source, dtype=dtype).to(self.device).eval()
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
        self.cache: LRUCache[torch.Tensor] = LRUCache(cache_size)
        # the key namespace: the model's files, the truncation and the chunking change an embedding
        shape = f"{self.source}|{self.max_length}|{chunk and (chunk_tokens, max_chunks, 'heading')}"
        self._ns = hashlib.blake2b(shape.encode(), digest_size=8).hexdigest()
        self.store = EmbeddingStore(store) if store else None
        self.encoded = 0  # texts run through the model (not served by a cache)

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees, before truncation."""
        return len(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    def warm_up(self) -> None:
        """One small inference, outside the cache."""
        self._encode([self._pieces("warm up", chunk=False)[0]])

    def _pieces(self, text: str, *, chunk: bool) -> list[list[int]]:
        """Token ids without special tokens: the text cut to the window; or, in chunk mode, a text
        longer than a chunk as overlapping windows that each begin with its first line (the
        title, when the document text starts with one), so every chunk knows what it is about."""
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
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

    @torch.inference_mode()
    def _encode(self, pieces: Sequence[list[int]]) -> torch.Tensor:
        out: list[torch.Tensor] = []
        for i in range(0, len(pieces), self.batch_size):
            inputs = [self._prefix + p + self._suffix for p in pieces[i : i + self.batch_size]]
            width = max(len(x) for x in inputs)
            ids = torch.tensor([x + [self._pad] * (width - len(x)) for x in inputs], device=self.device)
            attention = torch.tensor(
                [[1] * len(x) + [0] * (width - len(x)) for x in inputs], device=self.device
            )
            hidden = self.model(input_ids=ids, attention_mask=attention).last_hidden_state
            mask = attention.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled.float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.empty(0)

    def embed(self, texts: Sequence[str], *, chunk: bool = False) -> list[torch.Tensor]:
        """Per text, its normalized embeddings (one row per chunk), through the caches; the
        longest texts are encoded first so batches pad little."""
        return self.embed_all([(t, chunk) for t in texts])

    def embed_all(self, items: Sequence[tuple[str, bool]]) -> list[torch.Tensor]:
        """``embed`` of texts of both kinds (``(text, chunk)``: queries whole, documents in
        chunks) in one pass: what the caches lack is encoded together, sorted by length."""
        keys = [text_key(self._ns + ("c" if chunk else "q"), t) for t, chunk in items]
        rows: list[torch.Tensor | None] = [self.cache.get(k) for k in keys]
        if self.store is not None:
            stored = self.store.get([keys[i] for i, r in enumerate(rows) if r is None])
            for i, k in enumerate(keys):
                if rows[i] is None and k in stored:
                    vec = stored[k].view(-1, self.model.config.hidden_size)
                    rows[i] = vec
                    self.cache.put(k, vec)
        first: dict[bytes, int] = {}  # a text asked twice is encoded once
        for i, r in enumerate(rows):
            if r is None:
                first.setdefault(keys[i], i)
        missing = sorted(first.values(), key=lambda i: -len(items[i][0]))
        if missing:
            pieces = [self._pieces(items[i][0], chunk=items[i][1]) for i in missing]
            flat = [p for ps in pieces for p in ps]
            order = sorted(range(len(flat)), key=lambda j: -len(flat[j]))  # chunks and texts alike
            fresh = torch.empty(len(flat), self.model.config.hidden_size)
            fresh[torch.tensor(order, dtype=torch.long)] = self._encode([flat[j] for j in order])
            self.encoded += len(missing)
            made: dict[bytes, torch.Tensor] = {}
            at = 0
            for i, ps in zip(missing, pieces, strict=True):
                made[keys[i]] = fresh[at : at + len(ps)].clone()
                at += len(ps)
                self.cache.put(keys[i], made[keys[i]])
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
        rows = self.embed_all(list(items))
        out: list[list[list[float]]] = []
        for queries, documents, _ in requests:
            if not documents:
                out.append([[] for _ in queries])
                continue
            embedded = torch.cat([rows[items[(x, False)]] for x in queries])  # (queries, hidden)
            out.append(_best_chunks(embedded, [rows[items[(d, self.chunk)]] for d in documents]))
        return out


def _best_chunks(q: torch.Tensor, rows: list[torch.Tensor]) -> list[list[float]]:
    """Per query, each document's best chunk's cosine, every chunk against every query at once."""
    sims = torch.cat(rows) @ q.T  # (chunks of all documents, queries)
    owner = torch.repeat_interleave(torch.arange(len(rows)), torch.tensor([len(r) for r in rows]))
    best = torch.full((len(rows), sims.shape[1]), float("-inf"), dtype=sims.dtype)
    best.scatter_reduce_(0, owner[:, None].expand_as(sims), sims, reduce="amax")
    result: list[list[float]] = best.T.tolist()
    return result
