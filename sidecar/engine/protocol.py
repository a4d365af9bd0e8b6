"""The small protocol every rerank backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class Backend(Protocol):
    """A synchronous reranker; called only on the engine's inference thread."""

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
