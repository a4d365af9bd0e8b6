"""A model's running figures: batches, pairs, padding, cache hits, refusals."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class BatchStats:
    """Running figures for the admin API and benchmarks."""

    batches: int = 0
    pairs: int = 0
    real_tokens: int = 0
    padded_tokens: int = 0
    last_batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=256))
    overloaded: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    forwards: int = 0  # passes of a group backend (the bi-encoder): searches taken together
    forward_queries: int = 0  # the queries and variants those passes carried

    @property
    def padding_waste(self) -> float:
        """Share of computed tokens that were padding."""
        return 1 - self.real_tokens / self.padded_tokens if self.padded_tokens else 0.0
