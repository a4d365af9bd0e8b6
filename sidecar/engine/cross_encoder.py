"""Cross-encoders: ``AutoModelForSequenceClassification`` over (query, document) pairs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from sidecar.engine import onnx_runtime
from sidecar.engine.models import pick_device, resolve_model
from sidecar.engine.pairs import PairScorer, packed_layout, pick_attention, pick_dtype
from sidecar.engine.protocol import Encoded


class CrossEncoderBackend(PairScorer, onnx_runtime.Placed):
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
        packing: str = "auto",
        runtime: str = "auto",
        threads: int | None = None,
    ) -> None:
        self.name = name
        self.source = resolve_model(model)
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(self.source)
        attention = pick_attention(self.device)
        # packing here is a block-diagonal mask over one sequence: no flash-attention varlen path
        # is wired for encoders, so auto keeps the padded batches; ``on`` uses SDPA's masked kernels
        self.packed = packing == "on"
        if self.packed:
            attention = "sdpa"
        self.model = (
            AutoModelForSequenceClassification.from_pretrained(
                self.source, dtype=self.dtype, attn_implementation=attention
            )
            .to(self.device)
            .eval()
        )
        if self.packed and self._family() is None:
            raise ValueError(
                f"packing: on is for BERT- and RoBERTa-style cross-encoders, not {type(self.model).__name__}"
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
        self.placement = (  # packed batches run on torch
            onnx_runtime.Placement()
            if self.packed
            else onnx_runtime.place(name, runtime, self.device, self._exported, threads)
        )

    def _exported(self) -> tuple[torch.nn.Module, dict[str, torch.Tensor], str, str]:
        probe = self._padded([e for chunks in self.encode(*_PROBE, None) for e in chunks])
        return _Logits(self.model, "token_type_ids" in probe).eval(), probe, "logits", "cross-encoder"

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

    def _family(self) -> str | None:
        """How the classification head reads the first token: ``bert`` (the base model's pooler,
        then the classifier) or ``roberta`` (the classifier on the first token)."""
        base = self.model.base_model
        if getattr(base, "pooler", None) is not None and hasattr(self.model, "classifier"):
            return "bert"
        if type(self.model).__name__ in (
            "RobertaForSequenceClassification",
            "XLMRobertaForSequenceClassification",
        ):
            return "roberta"
        return None

    @torch.inference_mode()
    def _forward_packed(self, batch: Sequence[Encoded]) -> torch.Tensor:
        """Logits of a batch run as one sequence: a block-diagonal mask keeps inputs apart,
        position ids restart at each (after the padding index for RoBERTa-style models)."""
        ids, positions, segment, starts = packed_layout(batch)
        family = self._family()
        if family == "roberta":
            positions = positions + int(self.model.config.pad_token_id) + 1
        apart = segment[:, None] != segment[None, :]
        mask = torch.zeros(apart.shape, dtype=self.dtype).masked_fill(apart, torch.finfo(self.dtype).min)
        inputs: dict[str, torch.Tensor] = {
            "input_ids": ids,
            "position_ids": positions,
            "attention_mask": mask[None, None],
        }
        if batch[0][1] is not None:
            inputs["token_type_ids"] = torch.tensor(
                [t for _, types in batch for t in types or []], dtype=torch.long
            )[None]
        hidden = self.model.base_model(**{k: v.to(self.device) for k, v in inputs.items()}).last_hidden_state
        first = hidden[0, starts.to(hidden.device)][:, None, :]  # each input's first token, as (n, 1, H)
        if family == "bert":
            first = getattr(self.model, "dropout", torch.nn.Identity())(self.model.base_model.pooler(first))
        logits: torch.Tensor = self.model.classifier(first).float()
        return logits

    def _padded(self, batch: Sequence[Encoded]) -> dict[str, torch.Tensor]:
        features: dict[str, list[list[int]]] = {"input_ids": [ids for ids, _ in batch]}
        if batch[0][1] is not None:
            features["token_type_ids"] = [t or [] for _, t in batch]
        padded = self.tokenizer.pad(features, padding=True, return_tensors="pt")
        return {k: v.to(torch.long) for k, v in padded.items()}

    @torch.inference_mode()
    def forward(self, batch: Sequence[Encoded]) -> list[float]:
        """The model's score for each input of the batch."""
        if self.packed:
            return self._scores(self._forward_packed(batch))
        padded = self._padded(batch)
        onnx, bulk = self.placement.for_batch(padded)
        if onnx is not None:
            logits = onnx.run({k: v.numpy() for k, v in padded.items()}, bulk)
            return self._scores(torch.from_numpy(logits))
        return self._scores(self.model(**{k: v.to(self.device) for k, v in padded.items()}).logits.float())

    def _scores(self, logits: torch.Tensor) -> list[float]:
        if self.label_index is None:
            scores = torch.sigmoid(logits[:, 0])
        else:
            scores = torch.softmax(logits, dim=-1)[:, self.label_index]
        return [float(x) for x in scores.tolist()]


# the probe pair batch that an ONNX export is checked on: documents of lengths apart
_PROBE = (
    "what is the capital of france",
    [
        "Paris",
        "The capital of France is Paris, on the Seine; it has been the seat of government for centuries.",
        "gpu memory",
    ],
)


class _Logits(torch.nn.Module):
    """The classifier's logits (fp32) for padded inputs: what is exported to ONNX."""

    def __init__(self, model: torch.nn.Module, types: bool) -> None:
        super().__init__()
        self.model = model
        self.types = types

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        extra = {"token_type_ids": token_type_ids} if self.types else {}
        logits: torch.Tensor = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits
        return logits.float()
