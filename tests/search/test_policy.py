"""Thresholds, fusion and diagnostics on known scores."""

from __future__ import annotations

import statistics
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.config import RouteConfig
from sidecar.search.policy import _pstdev, cluster_weight, decide, fuse

SCORES = [0.10, 0.95, 0.50, 0.90, 0.30, 0.88]
ORIGINAL = [12.0, 3.0, 9.0, 6.0, 10.0, None]


def route(**kw: Any) -> RouteConfig:
    return RouteConfig(indices=["kb"], model="m", fields=["t"], **kw)


def test_replace_orders_by_the_model() -> None:
    d = decide(route(fusion="replace"), SCORES, ORIGINAL)
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
    d = decide(route(fusion="replace", **kw), SCORES, ORIGINAL)
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
    assert decide(route(), [0.1, 0.45, 0.3], [1, 1, 1]).flags == ("low",)
    assert decide(route(), [0.42, 0.41, 0.4], [1, 1, 1]).flags == ("flat", "low")
    assert decide(route(), SCORES, ORIGINAL).flags == ()
    assert decide(route(diagnostic_top=2), SCORES, ORIGINAL).flags == ("flat",)
    # a clear winner over weak neighbours is not low: the best score decides, not the mean
    assert decide(route(), [0.9, 0.1, 0.05, 0.02], [4, 3, 2, 1]).flags == ()
    assert decide(route(low_mean=0.5), [0.9, 0.1, 0.05, 0.02], [4, 3, 2, 1]).flags == ("low",)
    assert decide(route(low_score=0.96), SCORES, ORIGINAL).flags == ("low",)


def rrf(scores: list[float], w: float, k: int = 60) -> list[float]:
    by_model = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    rank = {i: r + 1 for r, i in enumerate(by_model)}
    return [1 / (k + rank[i]) + w / (k + i + 1) for i in range(len(scores))]


def blend(scores: list[float], w: float, alpha: float = 0.6, k: int = 60) -> list[float]:
    return [alpha * s + (1 - alpha) * w * k / (k + i) for i, s in enumerate(scores)]


def test_auto_blends_the_model_score_with_the_clusters_rank_when_it_chose_the_window() -> None:
    # the window is full (6 of 6): the cluster picked these out of more hits
    r = route(window=6)
    assert r.alpha == 0.6 and route(fusion="linear").alpha == 0.5
    assert cluster_weight(r, ORIGINAL) == 1.0
    assert fuse(r, SCORES, ORIGINAL) == pytest.approx(blend(SCORES, 1.0))
    assert fuse(route(window=6, fusion_alpha=0.8, rrf_k=10), SCORES, ORIGINAL) == pytest.approx(
        blend(SCORES, 1.0, 0.8, 10)
    )
    # neighbours stay in the model's order; far apart in the cluster's, its first hit beats one
    # the model likes a little more: 0.6 x 0.6 + 0.4 against 0.6 x 0.7 + 0.4 x 60 / 119
    scores, cluster = [0.6] + [0.1] * 58 + [0.7], [float(60 - i) for i in range(60)]
    assert decide(route(window=60), scores, cluster).order[0] == 0
    assert decide(route(window=60), [0.6, 0.7], [2.0, 1.0]).order == [1, 0]


def test_auto_weighs_a_window_that_holds_every_hit_by_its_size() -> None:
    # 6 hits for a window of 100: the cluster sorted a handful, it chose nothing
    r = route(window=100)
    assert cluster_weight(r, ORIGINAL) == pytest.approx(6 / 60)
    assert fuse(r, SCORES, ORIGINAL) == pytest.approx(blend(SCORES, 6 / 60))
    assert decide(r, SCORES, ORIGINAL).order == decide(route(fusion="replace"), SCORES, ORIGINAL).order
    assert cluster_weight(route(window=100, rrf_k=3), ORIGINAL) == 1.0


@pytest.mark.parametrize("original", [[1.0] * 6, [0.0] * 6, [None] * 6])
def test_auto_ignores_a_cluster_whose_scores_are_all_equal(original: list[float | None]) -> None:
    # match_all, filter-only and constant_score searches: ranks that are only storage order
    r = route(window=6)
    assert cluster_weight(r, original) == 0.0
    assert decide(r, SCORES, original).order == [1, 3, 5, 2, 4, 0]
    assert cluster_weight(route(window=6, fusion="rrf"), original) == 1.0


def test_the_cluster_wins_ties_of_plain_rrf() -> None:
    # model ranks 1 and 2 against cluster ranks 2 and 1: a tie, kept in the cluster's order
    d = decide(route(fusion="rrf"), [0.8, 0.9], [2.0, 1.0])
    assert d.final[0] == pytest.approx(d.final[1]) and d.order == [0, 1]


@pytest.mark.parametrize("fusion", ["auto", "rrf"])
def test_rank_fusion_shows_the_model_scale_down_the_fused_order(fusion: str) -> None:
    d = decide(route(fusion=fusion, window=6), SCORES, ORIGINAL)
    shown = [d.shown[i] for i in d.order]
    assert shown == sorted(SCORES, reverse=True)  # the model's scores, highest first
    assert all(0 <= s <= 1 for s in d.shown)


def test_shown_scores_respect_cuts() -> None:
    d = decide(route(fusion="rrf", window=6, min_score=0.5), SCORES, ORIGINAL)
    assert sorted(d.shown[i] for i in d.order) == sorted(s for s in SCORES if s >= 0.5)
    assert min(d.shown[i] for i in d.order) >= 0.5  # a client's _score threshold sees no cut hit's score


def test_replace_and_linear_show_their_own_scores() -> None:
    assert decide(route(fusion="replace"), SCORES, ORIGINAL).shown == SCORES
    lin = decide(route(fusion="linear"), SCORES, ORIGINAL)
    assert lin.shown == lin.final and all(0 <= s <= 1 for s in lin.shown)


@pytest.mark.parametrize("fusion", ["replace", "auto", "rrf", "linear"])
def test_hits_without_text_keep_their_cluster_order_after_the_scored_ones(fusion: str) -> None:
    missing = [0, 4]  # the model read nothing there: their scores mean nothing
    d = decide(route(fusion=fusion, min_score=0.2), SCORES, ORIGINAL, missing)
    read = [i for i in range(len(SCORES)) if i not in missing]
    alone = decide(
        route(fusion=fusion, min_score=0.2), [SCORES[i] for i in read], [ORIGINAL[i] for i in read]
    )
    assert d.order == [read[j] for j in alone.order] + [0, 4]  # never cut by the score threshold
    assert d.flags == (*alone.flags, "missing-text")
    assert d.shown[0] == d.shown[4] == 0.0
    shown = [d.shown[i] for i in d.order]
    assert shown == sorted(shown, reverse=True)
    assert decide(route(max_hits=5), SCORES, ORIGINAL, missing).order[-1] == 0  # max_hits counts them
    assert len(decide(route(max_hits=5), SCORES, ORIGINAL, missing).order) == 5


@given(st.lists(st.floats(-1, 1), min_size=2, max_size=10))
def test_the_flat_flag_reads_the_standard_deviation_in_floats(scores: list[float]) -> None:
    assert _pstdev(scores) == pytest.approx(statistics.pstdev(scores), abs=1e-12)


def test_a_window_cut_whole_is_flagged() -> None:
    d = decide(route(min_score=0.99), SCORES, ORIGINAL)
    assert d.order == [] and d.cut == len(SCORES) and "all-cut" in d.flags
    assert "all-cut" not in decide(route(min_score=0.5), SCORES, ORIGINAL).flags
    assert "all-cut" not in decide(route(), [], []).flags  # nothing to cut
