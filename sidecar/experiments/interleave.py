"""Team-draft interleaving (Radlinski, Kurup and Joachims, 2008): two rankings merged into
one list, each position credited to the team (arm) whose ranking put it there."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

CONTROL, TREATMENT = "control", "treatment"


def team_draft(a: Sequence[T], b: Sequence[T], rng: random.Random) -> tuple[list[T], list[str]]:
    """Merge rankings ``a`` (control) and ``b`` (treatment). Each round the team with fewer
    picks so far picks next (a coin decides when they are even) and adds its highest-ranked
    item not yet in the list; a team whose ranking is used up leaves the rest to the other.
    Returns the merged list and, per position, the team that placed it."""
    merged: list[T] = []
    teams: list[str] = []
    seen: set[T] = set()
    ia = ib = 0
    picks = {CONTROL: 0, TREATMENT: 0}
    while True:
        while ia < len(a) and a[ia] in seen:
            ia += 1
        while ib < len(b) and b[ib] in seen:
            ib += 1
        a_left, b_left = ia < len(a), ib < len(b)
        if not a_left and not b_left:
            return merged, teams
        if a_left and b_left:
            if picks[CONTROL] != picks[TREATMENT]:
                team = CONTROL if picks[CONTROL] < picks[TREATMENT] else TREATMENT
            else:
                team = CONTROL if rng.random() < 0.5 else TREATMENT
        else:
            team = CONTROL if a_left else TREATMENT
        item = a[ia] if team == CONTROL else b[ib]
        merged.append(item)
        teams.append(team)
        seen.add(item)
        picks[team] += 1
