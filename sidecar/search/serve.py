"""Which order an experiment serves a search: control, treatment, or both interleaved."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

from sidecar.config import ExperimentConfig, RouteConfig
from sidecar.events.event import ExperimentRecord
from sidecar.experiments.assign import bucket, seed
from sidecar.experiments.interleave import CONTROL, TREATMENT, team_draft
from sidecar.experiments.tracker import Tracker, fingerprint, identity_hash
from sidecar.search.policy import Decision, decide

# a model's aggregated scores of the window for an arm that scores with another model
# (None when it could not answer: that search is served control and not counted)
Rescore = Callable[[RouteConfig], Awaitable[list[float] | None]]


@dataclass(frozen=True)
class Lab:
    """An experiment as a route's snapshot serves it."""

    name: str
    config: ExperimentConfig
    tracker: Tracker
    redact: bool = False  # events.redact: no query text in its impressions either

    @cached_property
    def settings(self) -> str:
        """The settings hash every event of this experiment carries (once per snapshot)."""
        return fingerprint(self.config)


@dataclass(frozen=True)
class ArmOrder:
    """An arm's order of the window (indices, cut hits left out) and the ``_score`` of each
    hit; ``order`` None: the cluster's order, with its own scores."""

    order: list[int] | None
    shown: list[float] | None = None

    def ids(self, n: int) -> list[int]:
        return list(range(n)) if self.order is None else self.order


@dataclass(frozen=True)
class Served:
    """What the client gets: an arm's order (or the interleaved one) and the event's record;
    ``credit``: per position of ``order``, the arm that placed it (interleaved only);
    ``control``/``treatment``: both arms' orders, for the shadow comparison."""

    served: ArmOrder
    record: ExperimentRecord
    credit: list[str] | None
    control: list[int]
    treatment: list[int]


async def _arm(
    route: RouteConfig,
    side: str,
    decision: Decision,
    scores: Sequence[float],
    original: Sequence[float | None],
    missing: Sequence[int],
    rescore: Rescore,
) -> ArmOrder | None:
    arm = route.arm(side)
    if arm is None:
        return ArmOrder(None)
    if arm == route:
        return ArmOrder(decision.order, decision.shown)
    own = scores if arm.model == route.model else await rescore(arm)
    if own is None:
        return None
    d = decide(arm, own, original, missing)
    return ArmOrder(d.order, d.shown)


async def choose(
    lab: Lab,
    route: RouteConfig,
    query: str,
    who: str | None,
    decision: Decision,
    scores: Sequence[float],
    original: Sequence[float | None],
    missing: Sequence[int],
    rescore: Rescore,
) -> Served | None:
    """The order to serve under the experiment; None when an arm could not be made (its model
    failed): the route's own order is served and the search is not counted."""
    cfg = lab.config
    n = len(scores)
    control = await _arm(route, "control", decision, scores, original, missing, rescore)
    treatment = await _arm(route, "treatment", decision, scores, original, missing, rescore)
    if control is None or treatment is None:
        return None
    stopped = lab.tracker.stopped(lab.name)
    identified = who is not None

    def record(served: str, credit: list[str] | None = None) -> ExperimentRecord:
        return ExperimentRecord(
            name=lab.name,
            mode=cfg.mode,
            served=served,
            identified=identified,
            credit=credit,
            stopped=stopped,
            settings=lab.settings,
            identity=identity_hash(who),
        )

    both = (control.ids(n), treatment.ids(n))
    if cfg.mode == "shadow" or stopped or who is None:
        return Served(control, record(CONTROL), None, *both)
    if cfg.mode == "ab":
        side = TREATMENT if bucket(lab.name, who) < cfg.share else CONTROL
        return Served(treatment if side == TREATMENT else control, record(side), None, *both)
    merged, teams = team_draft(both[0], both[1], random.Random(seed(lab.name, who, query)))
    # _score along the interleaved list: the model's scores of its hits from the highest down
    ranked = sorted((scores[i] for i in merged), reverse=True)
    shown = list(scores)
    for i, s in zip(merged, ranked, strict=True):
        shown[i] = s
    return Served(ArmOrder(merged, shown), record("interleaved"), teams, *both)


def page_credit(credit: list[str] | None, from_: int, size: int, page_len: int) -> list[str] | None:
    """The arms of the page's hits (``none`` for hits past the interleaved list)."""
    if credit is None:
        return None
    own = credit[from_ : from_ + size]
    return own + ["none"] * (page_len - len(own))
