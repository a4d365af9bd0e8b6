"""The figures of an experiment: a win rate with its Wilson interval, the exact sign test,
two-proportion tests for A/B click-through, and how many queries a decision still needs."""

from __future__ import annotations

import math
from statistics import NormalDist

_NORMAL = NormalDist()


def z(p: float) -> float:
    """The standard normal quantile."""
    return _NORMAL.inv_cdf(p)


def wilson(successes: int, n: int, level: float = 0.95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (None with no trials)."""
    if n <= 0:
        return None
    q = z(0.5 + level / 2)
    p = successes / n
    centre = (p + q * q / (2 * n)) / (1 + q * q / n)
    half = q * math.sqrt(p * (1 - p) / n + q * q / (4 * n * n)) / (1 + q * q / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _binom_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exactly (in log space, so n may be large)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    log_half_n = -n * math.log(2)
    terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + log_half_n for i in range(k + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def sign_test(wins: int, losses: int) -> float | None:
    """The two-sided exact sign test p-value of ``wins`` against ``losses`` (ties left out);
    None with no decided pair."""
    n = wins + losses
    if n == 0:
        return None
    return min(1.0, 2 * _binom_cdf(min(wins, losses), n))


def sign_test_needed(win_rate: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Decided queries for the sign test to find ``win_rate`` at level ``alpha`` with ``power``
    (normal approximation); None when the rate is 1/2 (no effect to find)."""
    effect = abs(win_rate - 0.5)
    if effect < 1e-9:
        return None
    n = (z(1 - alpha / 2) * 0.5 + z(power) * math.sqrt(win_rate * (1 - win_rate))) ** 2 / effect**2
    return math.ceil(n)


def two_proportions(x1: int, n1: int, x2: int, n2: int, level: float = 0.95) -> dict[str, float] | None:
    """Treatment (2) against control (1): the difference of rates, its Wald interval and the
    two-sided z-test p-value (pooled); None until both arms have trials."""
    if n1 <= 0 or n2 <= 0:
        return None
    p1, p2 = x1 / n1, x2 / n2
    pooled = (x1 + x2) / (n1 + n2)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    p_value = 1.0 if se0 == 0 else 2 * (1 - _NORMAL.cdf(abs(p2 - p1) / se0))
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    q = z(0.5 + level / 2)
    return {"difference": p2 - p1, "low": p2 - p1 - q * se, "high": p2 - p1 + q * se, "p_value": p_value}


def proportions_needed(p1: float, p2: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Trials per arm for a two-sided z-test to find ``p1`` against ``p2``; None when equal."""
    if abs(p1 - p2) < 1e-9:
        return None
    n = (z(1 - alpha / 2) + z(power)) ** 2 * (p1 * (1 - p1) + p2 * (1 - p2)) / (p1 - p2) ** 2
    return math.ceil(n)
