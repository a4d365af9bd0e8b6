"""The small protocols every rerank backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

# One model input: token ids, and token type ids where the model has them.
Encoded = tuple[list[int], list[int] | None]


@runtime_checkable
class Backend(Protocol):
    """A synchronous reranker; called only on its model's inference thread."""

    name: str

    def score(self, query: str, documents: Sequence[str], instruction: str | None = None) -> list[float]:
        """Return one relevance score per document, higher is better."""
        ...

    def count_tokens(self, text: str) -> int:
        """Return how many tokens the model sees for this text."""
        ...

    def warm_up(self) -> None:
        """Run one small inference so the first real request pays no start-up cost."""
        ...


@runtime_checkable
class PairBackend(Backend, Protocol):
    """A backend that scores (query, document) pairs one input each, so pairs of many
    searches can share a forward pass: the batcher calls ``encode`` and ``forward``."""

    max_length: int

    def encode(self, query: str, documents: Sequence[str], instruction: str | None) -> list[list[Encoded]]:
        """The model inputs of each document: one, or one per chunk of a long document."""
        ...

    def forward(self, batch: Sequence[Encoded]) -> list[float]:
        """Scores of a batch of inputs, in order."""
        ...
