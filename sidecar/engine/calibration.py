"""Model scores as one kind of number for every backend: a value in [0, 1] where 0.5 means
"as likely relevant as not".

Qwen3 gives P(yes), a cross-encoder its sigmoid or softmax, the remote engines the same: those
are probabilities already and pass unchanged. A bi-encoder's cosine is not: it is mapped through
``sigmoid((cosine - center) / scale)``, a logistic fit of relevant against non-relevant
candidates with both classes weighted equally (so the prior of the fitting set does not leak in).
Known models ship their fit; ``rerank-sidecar eval --tune`` fits one for any model on judged queries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Calibration:
    """``sigmoid((raw - center) / scale)``."""

    center: float
    scale: float

    def __call__(self, raw: float) -> float:
        z = (raw - self.center) / self.scale
        return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))

    def raw(self, p: float) -> float:
        """The inverse: the raw score that calibrates to ``p``."""
        p = min(max(p, 1e-12), 1 - 1e-12)
        return self.center + self.scale * math.log(p / (1 - p))


# Fitted with ``fit`` on the judged BM25 top-100 windows of Cranfield (225 queries, 22,500
# pairs, 1,110 relevant; 128-token titled chunks); SciFact's tuning half gives a centre of 0.467.
KNOWN: dict[str, Calibration] = {
    "all-MiniLM-L6-v2": Calibration(center=0.475, scale=0.100),
}
# A bi-encoder without a known or configured fit gets MiniLM's: right for models whose cosines
# spread like it (most sentence-transformers), compressed for others (e5, bge): fit one then.
GENERIC_COSINE = KNOWN["all-MiniLM-L6-v2"]


def for_model(backend: str, model: str | None, configured: Calibration | None) -> Calibration | None:
    """The calibration a model's raw scores go through; None for those that are probabilities."""
    if configured is not None:
        return configured
    if backend != "bi-encoder":
        return None
    name = (model or "").rstrip("/").rsplit("/", 1)[-1]
    return KNOWN.get(name, GENERIC_COSINE)


def apply(calibration: Calibration | None, scores: Sequence[float]) -> list[float]:
    """Calibrated scores (the same list of floats when there is no calibration)."""
    if calibration is None:
        return list(scores)
    return [calibration(s) for s in scores]


def fit(raw: Sequence[float], relevant: Sequence[bool], iterations: int = 50) -> Calibration:
    """The logistic fit of relevance on the raw score, classes weighted equally (Newton's
    method on the weighted log-likelihood, a small ridge keeping it finite on separable data)."""
    pos = sum(1 for r in relevant if r)
    neg = len(relevant) - pos
    if pos == 0 or neg == 0:
        raise ValueError("a calibration needs both relevant and non-relevant candidates")
    weight = [0.5 / pos if r else 0.5 / neg for r in relevant]
    a, b = 1.0, 0.0  # logit = a * raw + b
    ridge = 1e-6
    for _ in range(iterations):
        ga = gb = haa = hab = hbb = 0.0
        for x, y, w in zip(raw, relevant, weight, strict=True):
            z = a * x + b
            p = 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))
            g = w * ((1.0 if y else 0.0) - p)
            h = w * p * (1 - p)
            ga += g * x
            gb += g
            haa += h * x * x
            hab += h * x
            hbb += h
        ga -= ridge * a
        haa += ridge
        hbb += ridge
        det = haa * hbb - hab * hab
        if det <= 0:
            break
        da = (hbb * ga - hab * gb) / det
        db = (haa * gb - hab * ga) / det
        a, b = a + da, b + db
        if abs(da) < 1e-10 and abs(db) < 1e-10:
            break
    if a <= 0:
        raise ValueError("higher raw scores are not more often relevant: no calibration fits")
    return Calibration(center=-b / a, scale=1 / a)
