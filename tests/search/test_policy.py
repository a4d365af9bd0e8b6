"""Thresholds, fusion and diagnostics on known scores."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.config import RouteConfig
from sidecar.search.policy import decide, fuse

SCORES = [0.10, 0.95, 0.50, 0.90, 0.30, 0.88]
ORIGINAL = [12.0, 3.0, 9.0, 6.0, 10.0, None]


def route(**kw: Any) -> RouteConfig:
    return RouteConfig(indices=["kb"], model="m", fields=["t"], **kw)


def test_replace_orders_by_the_model() -> None:
    d = decide(route(), SCORES, ORIGINAL)
    assert d.order == [1, 3, 5, 2, 4, 0] and d.cut == 0
    assert d.final == SCORES


@pytest.mark.parametrize(
    ("kw", "kept"),
    [
        ({"min_score": 0.5}, [1, 3, 5, 2]),
        ({"relative_to_top": 0.9}, [1, 3, 5]),  # >= 0.855
        ({"max_drop": 0.3}, [1, 3, 5]),  # 0.88 -> 0.50 is the first gap over 0.3
        ({"max_drop": 0.4}, [1, 3, 5, 2, 4, 0]),  # no gap is over 0.4
        ({"max_hits": 2}, [1, 3]),
        ({"min_score": 0.2, "max_hits": 3}, [1, 3, 5]),
    ],
)
def test_thresholds(kw: dict[str, Any], kept: list[int]) -> None:
    d = decide(route(**kw), SCORES, ORIGINAL)
    assert d.order == kept
    assert d.cut == len(SCORES) - len(kept)


def test_linear_fusion_blends_the_normalized_original_score() -> None:
    final = fuse(route(fusion="linear", fusion_alpha=0.75), SCORES, ORIGINAL)
    norm = [1.0, 0.0, 6 / 9, 3 / 9, 7 / 9, 0.0]
    assert final == pytest.approx([0.75 * s + 0.25 * n for s, n in zip(SCORES, norm, strict=True)])


def test_rrf_fuses_ranks() -> None:
    final = fuse(route(fusion="rrf", rrf_k=60), SCORES, ORIGINAL)
    model_rank = {1: 1, 3: 2, 5: 3, 2: 4, 4: 5, 0: 6}
    assert final == pytest.approx([1 / (60 + model_rank[i]) + 1 / (60 + i + 1) for i in range(6)])
    order = decide(route(fusion="rrf"), SCORES, ORIGINAL).order
    assert order[0] == 1


def test_thresholds_apply_to_the_model_score_under_fusion() -> None:
    d = decide(route(fusion="linear", min_score=0.5), SCORES, ORIGINAL)
    assert sorted(d.order) == [1, 2, 3, 5]


def test_flags() -> None:
    assert decide(route(), [0.91, 0.9, 0.92, 0.9], [1, 1, 1, 1]).flags == ("flat",)
    assert decide(route(), [0.1, 0.5, 0.3], [1, 1, 1]).flags == ("low",)
    assert decide(route(), [0.52, 0.51, 0.5], [1, 1, 1]).flags == ("flat", "low")
    assert decide(route(), SCORES, ORIGINAL).flags == ()
    assert decide(route(diagnostic_top=2), SCORES, ORIGINAL).flags == ("flat",)
