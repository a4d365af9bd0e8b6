"""Cross-encoders: ``AutoModelForSequenceClassification`` over (query, document) pairs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from sidecar.engine.models import pick_device, resolve_model
from sidecar.engine.pairs import PairScorer, pick_attention, pick_dtype
from sidecar.engine.protocol import Encoded


class CrossEncoderBackend(PairScorer):
    """Sigmoid of the single logit, or the softmax probability of a configured label."""

    def __init__(
        self,
        model: str,
        *,
        name: str = "cross-encoder",
        device: str = "auto",
        dtype: str = "auto",
        max_length: int | None = None,
        batch_tokens: int | None = None,
        long_docs: str = "truncate",
        chunk_tokens: int = 512,
        max_chunks: int = 8,
        label: str | int | None = None,
    ) -> None:
        self.name = name
        self.source = resolve_model(model)
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(self.source)
        self.model = (
            AutoModelForSequenceClassification.from_pretrained(
                self.source, dtype=self.dtype, attn_implementation=pick_attention(self.device)
            )
            .to(self.device)
            .eval()
        )
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if getattr(self.model.config, "pad_token_id", None) is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        limit = getattr(self.tokenizer, "model_max_length", None)
        limit = limit if isinstance(limit, int) and limit < 1_000_000 else 512
        self.max_length = min(max_length or limit, limit)
        self.batch_tokens = batch_tokens or 16384
        self.long_docs = long_docs
        self.chunk_tokens = chunk_tokens
        self.max_chunks = max_chunks
        self.num_labels = int(self.model.config.num_labels)
        self.label_index = self._label_index(label)

    def _label_index(self, label: str | int | None) -> int | None:
        if label is None:
            if self.num_labels != 1:
                raise ValueError(
                    f"model has {self.num_labels} labels: set label to one of {self.model.config.id2label}"
                )
            return None
        if isinstance(label, int):
            if not 0 <= label < self.num_labels:
                raise ValueError(f"label {label} is out of range for {self.num_labels} labels")
            return label
        label2id = {str(k): int(v) for k, v in self.model.config.label2id.items()}
        if label not in label2id:
            raise ValueError(f"label {label!r} is not one of {sorted(label2id)}")
        return label2id[label]

    def encode(self, query: str, documents: Sequence[str], instruction: str | None) -> list[list[Encoded]]:
        """Query and document as the model's pair input, cutting only the document."""
        per_doc = self.documents_as_chunks(documents)
        flat = [c for chunks in per_doc for c in chunks]
        try:
            enc = self.tokenizer(
                [query] * len(flat), flat, truncation="only_second", max_length=self.max_length
            )
        except Exception:  # the query alone is longer than the budget: cut both
            enc = self.tokenizer(
                [query] * len(flat), flat, truncation="longest_first", max_length=self.max_length
            )
        types = enc.get("token_type_ids")
        out: list[list[Encoded]] = []
        k = 0
        for chunks in per_doc:
            out.append(
                [
                    (enc["input_ids"][k + j], types[k + j] if types is not None else None)
                    for j in range(len(chunks))
                ]
            )
            k += len(chunks)
        return out

    @torch.inference_mode()
    def forward(self, batch: Sequence[Encoded]) -> list[float]:
        """The model's score for each input of the batch."""
        features: dict[str, list[list[int]]] = {"input_ids": [ids for ids, _ in batch]}
        if batch[0][1] is not None:
            features["token_type_ids"] = [t or [] for _, t in batch]
        padded = self.tokenizer.pad(features, padding=True, return_tensors="pt")
        logits = self.model(**{k: v.to(self.device) for k, v in padded.items()}).logits.float()
        if self.label_index is None:
            scores = torch.sigmoid(logits[:, 0])
        else:
            scores = torch.softmax(logits, dim=-1)[:, self.label_index]
        return [float(x) for x in scores.tolist()]
