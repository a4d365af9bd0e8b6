"""The one percentile the service, the eval and the benchmarks all report."""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (0 < p <= 100): the smallest value that at least p%
    of the values are at or below. ValueError for no values."""
    xs = sorted(values)
    if not xs:
        raise ValueError("a percentile of no values")
    if not 0 < p <= 100:
        raise ValueError(f"p must be in (0, 100], got {p}")
    return xs[max(0, math.ceil(p / 100 * len(xs)) - 1)]
