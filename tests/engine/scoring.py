"""The engine's one entry (``Scorer.score(ScoreRequest)``) as the tests call it most: one query."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sidecar.engine.protocol import Scored, ScoreRequest


async def scores_of(
    scorer: Any, query: str, documents: Sequence[str], instruction: str | None, timeout_s: float
) -> list[float]:
    """One query's scores of the documents."""
    return (await timed(scorer, query, documents, instruction, timeout_s)).scores


async def timed(
    scorer: Any, query: str, documents: Sequence[str], instruction: str | None, timeout_s: float
) -> Scored:
    """One query's scores with their queue and model time."""
    return (await scorer.score(ScoreRequest.of([query], documents, instruction, timeout_s)))[0]


async def each(
    scorer: Any, queries: Sequence[str], documents: Sequence[str], instruction: str | None, timeout_s: float
) -> list[Scored]:
    """Every query's scores of the documents, as one request."""
    return list(await scorer.score(ScoreRequest.of(queries, documents, instruction, timeout_s)))
