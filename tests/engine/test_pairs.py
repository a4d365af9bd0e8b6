"""Token-budgeted, length-sorted batches."""

from __future__ import annotations

import random

import pytest

from sidecar.engine.pairs import token_batches


@pytest.mark.parametrize("seed", range(5))
def test_batches_cover_everything_within_budget_and_padding(seed: int) -> None:
    rnd = random.Random(seed)
    lengths = [rnd.randint(50, 400) for _ in range(200)]
    batches = list(token_batches(lengths, 4096, max_padding=0.05))
    assert sorted(i for b in batches for i in b) == list(range(200))
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat)
    for b in batches:
        padded = max(lengths[i] for i in b) * len(b)
        assert padded <= 4096 or len(b) == 1
        assert padded - sum(lengths[i] for i in b) <= 0.05 * padded
    real = sum(lengths)
    total = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    assert 1 - real / total < 0.05


def test_equal_lengths_fill_the_budget() -> None:
    batches = list(token_batches([256] * 100, 16384))
    assert [len(b) for b in batches] == [64, 36]


def test_an_input_longer_than_the_budget_runs_alone() -> None:
    assert list(token_batches([10, 5000, 10], 1000)) == [[0, 2], [1]]
