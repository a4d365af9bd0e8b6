"""The one percentile helper: nearest rank, as the stats, the eval and the benchmarks report it."""

from __future__ import annotations

import pytest

from sidecar.percentile import percentile


def test_nearest_rank() -> None:
    values = list(range(100, 0, -1))  # 1..100, unsorted
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 99) == 99 and percentile(values, 100) == 100
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([3.0, 1.0], 1) == 1.0


def test_no_values_or_a_bad_rank_is_an_error() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 0)
