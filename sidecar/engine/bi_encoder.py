"""Bi-encoder backend: mean-pooled, normalized embeddings and cosine scores."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from transformers import AutoModel, AutoTokenizer

from sidecar.engine.cache import LRUCache, text_key
from sidecar.engine.models import pick_device, resolve_model

log = logging.getLogger(__name__)


class BiEncoderBackend:
    """Scores a document by the cosine of its embedding with the query's."""

    def __init__(
        self,
        model: str,
        *,
        name: str = "bi-encoder",
        device: str = "auto",
        max_length: int = 256,
        batch_size: int = 32,
        cache_size: int = 50_000,
    ) -> None:
        self.name = name
        self.source = resolve_model(model)
        self.device = pick_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(self.source)
        dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.model = AutoModel.from_pretrained(self.source, dtype=dtype).to(self.device).eval()
        limit = getattr(self.tokenizer, "model_max_length", max_length) or max_length
        self.max_length = min(max_length, limit)
        self.batch_size = batch_size
        self.cache: LRUCache[torch.Tensor] = LRUCache(cache_size)
        self._ns = f"{name}:{self.source}"[-16:]

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees, before truncation."""
        return len(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    def warm_up(self) -> None:
        """One small inference, outside the cache."""
        self._encode(["warm up"])

    @torch.inference_mode()
    def _encode(self, texts: Sequence[str]) -> torch.Tensor:
        out: list[torch.Tensor] = []
        for i in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                list(texts[i : i + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled.float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.empty(0)

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Normalized embeddings for texts, through the cache; longest-first batching."""
        keys = [text_key(self._ns, t) for t in texts]
        rows: list[torch.Tensor | None] = [self.cache.get(k) for k in keys]
        missing = sorted({i for i, r in enumerate(rows) if r is None}, key=lambda i: -len(texts[i]))
        if missing:
            fresh = self._encode([texts[i] for i in missing])
            for j, i in enumerate(missing):
                rows[i] = fresh[j]
                self.cache.put(keys[i], fresh[j])
        return torch.stack([r for r in rows if r is not None]) if rows else torch.empty(0)

    def score(self, query: str, documents: Sequence[str], instruction: str | None = None) -> list[float]:
        """Cosine similarity of each document with the query."""
        if not documents:
            return []
        q = self.embed([query])[0]
        d = self.embed(documents)
        return [float(x) for x in (d @ q).tolist()]
