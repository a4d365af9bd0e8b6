"""The Qwen3-Reranker model card's scoring code, kept as the reference our fast path must match.

This is deliberately the straightforward version: the card's prompt, its tokenizer call, a
full causal-LM forward pass with logits for every position and the whole vocabulary, and
the yes/no softmax at the last position. Tests compare against it pair by pair and the
benchmark runs it in batches of 16 as users of the card do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from sidecar.engine.qwen3 import PREFIX, SUFFIX, format_instruction


class CardReranker:
    """The card's ``process_inputs`` and ``compute_logits`` around a loaded model and tokenizer."""

    def __init__(self, model: Any, tokenizer: Any, max_length: int = 8192) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.prefix_tokens = tokenizer.encode(PREFIX, add_special_tokens=False)
        self.suffix_tokens = tokenizer.encode(SUFFIX, add_special_tokens=False)
        self.token_false_id = tokenizer.convert_tokens_to_ids("no")
        self.token_true_id = tokenizer.convert_tokens_to_ids("yes")

    def process_inputs(self, pairs: list[str]) -> Any:
        inputs = self.tokenizer(
            pairs,
            padding=False,
            truncation="longest_first",
            return_attention_mask=False,
            max_length=self.max_length - len(self.prefix_tokens) - len(self.suffix_tokens),
        )
        for i, ele in enumerate(inputs["input_ids"]):
            inputs["input_ids"][i] = self.prefix_tokens + ele + self.suffix_tokens
        inputs = self.tokenizer.pad(inputs, padding=True, return_tensors="pt", max_length=self.max_length)
        for key in inputs:
            inputs[key] = inputs[key].to(self.model.device)
        return inputs

    @torch.no_grad()
    def compute_logits(self, inputs: Any) -> list[float]:
        batch_scores = self.model(**inputs).logits[:, -1, :]
        true_vector = batch_scores[:, self.token_true_id]
        false_vector = batch_scores[:, self.token_false_id]
        batch_scores = torch.stack([false_vector, true_vector], dim=1)
        batch_scores = torch.nn.functional.log_softmax(batch_scores, dim=1)
        return [float(x) for x in batch_scores[:, 1].exp().tolist()]

    def score(
        self, query: str, documents: Sequence[str], instruction: str | None = None, batch_size: int = 16
    ) -> list[float]:
        """Scores in batches of ``batch_size``, as the card's users run it."""
        pairs = [format_instruction(instruction, query, d) for d in documents]
        out: list[float] = []
        for i in range(0, len(pairs), batch_size):
            out += self.compute_logits(self.process_inputs(pairs[i : i + batch_size]))
        return out
