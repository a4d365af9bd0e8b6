"""What experiments have served and what users clicked: the live figures of each experiment.

Every search an experiment serves leaves an ``Impression`` (the page as served, which arm
placed each hit), kept until ``max_pending`` newer ones push it out; a click (a UBI event
whose ``query_id`` names an impression) updates that impression's outcome and the
experiment's counters at once. Nothing here does I/O: the proxy calls it on the event loop.

Clicks come from anyone who can write to the cluster through the sidecar, so a click counts
only when it is the searcher's: an impression is found by its query_id *and* the identity
that searched (a client-chosen query_id that another user also sent is another impression,
never overwritten), for a hit that search served, once, within ``click_window_s`` of the
search, and within the per-identity caps of its experiment. The query ids the sidecar issues
itself are signed (HMAC), so a forged one is told apart without a lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sidecar.config import ExperimentConfig
from sidecar.events.event import SearchEvent
from sidecar.experiments import stats
from sidecar.experiments.interleave import CONTROL, TREATMENT

log = logging.getLogger(__name__)

RECENT = 50  # impressions kept per experiment for the drill-down
QUERY_CHARS = 1000  # what an impression keeps of its query, for the drill-down


def identity_hash(who: str | None) -> str | None:
    """A short hash of an identity: what events and impressions keep of who searched."""
    if who is None:
        return None
    return hashlib.blake2b(who.encode(), digest_size=8).hexdigest()


@dataclass
class Impression:
    """One search an experiment served."""

    experiment: str
    query_id: str
    served: str  # control, treatment, or interleaved
    identified: bool
    ids: list[Any]  # the page as served
    first_rank: int  # the page's first hit's rank (from + 1)
    credit: list[str] | None = None  # interleaved: the arm that placed each hit of the page
    # shadow: the window's ids in each arm's order (which would have ranked a clicked hit higher)
    control_ids: list[Any] | None = None
    treatment_ids: list[Any] | None = None
    query: str | None = None
    event_id: str = ""
    time: float = field(default_factory=time.time)
    clicks: list[int] = field(default_factory=list)  # page positions clicked, first click each
    identity: str | None = None  # a hash of who searched: only their clicks count

    @property
    def key(self) -> tuple[str, str | None]:
        return self.query_id, self.identity

    @classmethod
    def of(
        cls, event: SearchEvent, control_ids: list[Any] | None = None, treatment_ids: list[Any] | None = None
    ) -> Impression | None:
        """The impression a search's event records (None without an experiment, a query id or a
        served page); ``control_ids``/``treatment_ids``: both arms' orders, for shadow's comparison."""
        e = event.experiment
        if e is None or event.query_id is None or event.served is None or event.page is None:
            return None
        return cls(
            e.name,
            event.query_id,
            e.served,
            e.identified,
            list(event.served),
            event.page.from_ + 1,
            credit=e.credit,
            control_ids=control_ids,
            treatment_ids=treatment_ids,
            query=None if event.query is None else event.query[:QUERY_CHARS],
            event_id=event.id,
            time=event.time,
            identity=e.identity,
        )

    def outcome(self) -> str | None:
        """win / loss / tie for treatment (interleaved or shadow), None without clicks."""
        if not self.clicks:
            return None
        if self.credit is not None:
            t = sum(1 for p in self.clicks if self.credit[p] == TREATMENT)
            c = sum(1 for p in self.clicks if self.credit[p] == CONTROL)
        elif self.control_ids is not None and self.treatment_ids is not None:
            clicked = [self.ids[p] for p in self.clicks]
            c = -sum(_rank(self.control_ids, i) for i in clicked)  # higher is better
            t = -sum(_rank(self.treatment_ids, i) for i in clicked)
        else:
            return None
        return "win" if t > c else "loss" if t < c else "tie"

    def reciprocal_rank(self) -> float:
        """1 / the rank of the first click (0 without a click)."""
        return 1 / (self.first_rank + min(self.clicks)) if self.clicks else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "query_id": self.query_id,
            "event_id": self.event_id,
            "time": self.time,
            "query": self.query,
            "served": self.served,
            "identified": self.identified,
            "ids": self.ids,
            "first_rank": self.first_rank,
            "credit": self.credit,
            "clicks": self.clicks,
            "outcome": self.outcome(),
        }


def _rank(ids: Sequence[Any], item: Any) -> int:
    try:
        return ids.index(item) + 1
    except ValueError:
        return len(ids) + 1


@dataclass
class _Arm:
    queries: int = 0
    clicked: int = 0
    rr: float = 0.0


class Experiment:
    """One experiment's counters (since its config last changed)."""

    def __init__(self, name: str, route: str, config: ExperimentConfig) -> None:
        self.name, self.route, self.config = name, route, config
        self.settings = fingerprint(config)  # what its searches' events carry
        self.started = time.time()
        self.queries = 0  # identified searches, the ones the experiment judges by
        self.unidentified = 0  # served the default arm (control), counted apart
        self.clicks = 0
        self.outcomes = {"win": 0, "loss": 0, "tie": 0}
        self.arms = {CONTROL: _Arm(), TREATMENT: _Arm()}
        self.stopped: str | None = None
        self.recent: deque[Impression] = deque(maxlen=RECENT)
        # per identity: searches counted and clicks counted (bounded: the oldest identities go)
        self._searches: OrderedDict[str, int] = OrderedDict()
        self._clicks: OrderedDict[str, int] = OrderedDict()

    def within_cap(self, counts: OrderedDict[str, int], who: str | None, cap: int) -> bool:
        """Count one more for ``who``; False when it has had its ``cap``."""
        if who is None:
            return True
        n = counts.get(who, 0)
        if n >= cap:
            return False
        counts[who] = n + 1
        counts.move_to_end(who)
        while len(counts) > 100_000:
            counts.popitem(last=False)
        return True

    def add(self, imp: Impression) -> None:
        self.recent.append(imp)
        if not imp.identified:
            self.unidentified += 1
            return
        self.queries += 1
        if imp.served in self.arms:
            self.arms[imp.served].queries += 1

    def click(self, imp: Impression, position: int) -> bool:
        """Count a click on the page's ``position``; False when it was clicked already."""
        if position in imp.clicks:
            return False
        if not self.within_cap(self._clicks, imp.identity, self.config.max_clicks_per_identity):
            raise _Rejected("capped")
        self.clicks += 1
        if not imp.identified:
            imp.clicks.append(position)
            return True
        before, rr = imp.outcome(), imp.reciprocal_rank()
        imp.clicks.append(position)
        after = imp.outcome()
        if before is not None:
            self.outcomes[before] -= 1
        if after is not None:
            self.outcomes[after] += 1
        arm = self.arms.get(imp.served)
        if arm is not None:
            arm.clicked += 0 if rr else 1
            arm.rr += imp.reciprocal_rank() - rr
        return True

    def losing(self) -> bool:
        """Whether treatment loses at the guardrail's level (after min_queries decided)."""
        c = self.config
        if self.config.mode == "ab":
            a, b = self.arms[CONTROL], self.arms[TREATMENT]
            if min(a.queries, b.queries) < c.min_queries:
                return False
            test = stats.two_proportions(a.clicked, a.queries, b.clicked, b.queries)
            return test is not None and test["difference"] < 0 and test["p_value"] < c.guardrail_p
        wins, losses = self.outcomes["win"], self.outcomes["loss"]
        if wins + losses < c.min_queries or wins >= losses:
            return False
        p = stats.sign_test(wins, losses)
        return p is not None and p < c.guardrail_p

    def summary(self) -> dict[str, Any]:
        c = self.config
        out: dict[str, Any] = {
            "name": self.name,
            "route": self.route,
            "mode": c.mode,
            "control": _describe(c.control),
            "treatment": _describe(c.treatment),
            "started": self.started,
            "state": "stopped" if self.stopped else "running",
            "stopped_reason": self.stopped,
            "queries": self.queries,
            "unidentified": self.unidentified,
            "clicks": self.clicks,
            "level": c.level,
        }
        if c.mode == "ab":
            out.update(self._ab())
        else:
            out.update(self._paired())
        return out

    def _paired(self) -> dict[str, Any]:
        wins, losses, ties = self.outcomes["win"], self.outcomes["loss"], self.outcomes["tie"]
        decided = wins + losses
        rate = wins / decided if decided else None
        interval = stats.wilson(wins, decided, 1 - self.config.level)
        p = stats.sign_test(wins, losses)
        significant = p is not None and p < self.config.level
        needed: int | None = 0
        if not significant:
            per_decided = stats.sign_test_needed(rate, self.config.level) if rate is not None else None
            if per_decided is None or not decided:
                needed = None
            else:  # in searches: only the decided share of them counts
                needed = max(0, math.ceil(per_decided * self.queries / decided) - self.queries)
        return {
            "wins": wins,
            "losses": losses,
            "ties": ties,
            "clicked_queries": wins + losses + ties,
            "win_rate": rate,
            "interval": list(interval) if interval else None,
            "p_value": p,
            "significant": significant,
            "better": (TREATMENT if wins > losses else CONTROL) if significant else None,
            "queries_needed": needed,
        }

    def _ab(self) -> dict[str, Any]:
        arms = {}
        for name, arm in self.arms.items():
            arms[name] = {
                "queries": arm.queries,
                "clicked": arm.clicked,
                "ctr": arm.clicked / arm.queries if arm.queries else None,
                "mrr": arm.rr / arm.queries if arm.queries else None,
            }
        a, b = self.arms[CONTROL], self.arms[TREATMENT]
        test = stats.two_proportions(a.clicked, a.queries, b.clicked, b.queries, 1 - self.config.level)
        significant = test is not None and test["p_value"] < self.config.level
        needed: int | None = 0
        if not significant:
            n = None
            if a.queries and b.queries:
                n = stats.proportions_needed(a.clicked / a.queries, b.clicked / b.queries, self.config.level)
            needed = None if n is None else max(0, n - a.queries) + max(0, n - b.queries)
        return {
            "arms": arms,
            "difference": test["difference"] if test else None,
            "interval": [test["low"], test["high"]] if test else None,
            "p_value": test["p_value"] if test else None,
            "significant": significant,
            "better": (TREATMENT if test and test["difference"] > 0 else CONTROL) if significant else None,
            "queries_needed": needed,
        }


class _Rejected(Exception):
    """A click that does not count, and why."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def fingerprint(config: ExperimentConfig) -> str:
    """A short hash of an experiment's settings: searches under other settings are another experiment."""
    return hashlib.blake2b(config.model_dump_json().encode(), digest_size=6).hexdigest()


def _describe(arm: Any) -> str:
    if isinstance(arm, dict):
        return "route with " + ", ".join(f"{k}={v}" for k, v in arm.items())
    return str(arm)


@dataclass(frozen=True)
class ReplayedClick:
    """A click read back (the store's, or the fleet's UBI events): its identity's hash when the
    store kept it, else how to find it from the click's client_id."""

    query_id: str
    object_id: str
    time: float | None = None
    identity: str | None = None
    who: Callable[[ExperimentConfig], str | None] | None = None


class Tracker:
    """All experiments' figures and the impressions clicks are matched to."""

    def __init__(
        self, max_pending: int = 20_000, key: bytes | None = None, click_window_s: float = 3600.0
    ) -> None:
        self.max_pending = max_pending
        # signs the query ids this sidecar issues; only a configured key (the same across
        # restarts and replicas) makes them checkable: a process's own would call every id
        # issued before a restart, or by another replica, forged
        self.verifies = key is not None
        self.key = key or secrets.token_bytes(32)
        self.last_identity: str | None = None  # the identity hash of the last click counted
        self.click_window_s = click_window_s
        self.experiments: dict[str, Experiment] = {}
        self.pending: OrderedDict[tuple[str, str | None], Impression] = OrderedDict()
        self._by_id: dict[str, tuple[str, str | None]] = {}  # a query id's latest impression
        self.unmatched = 0  # clicks whose query_id names no impression kept
        # clicks that named an impression and did not count, by why: another identity's,
        # a hit the search did not serve, past the window, a forged id, over a cap
        self.rejected: dict[str, int] = {
            "identity": 0,
            "not_served": 0,
            "late": 0,
            "forged": 0,
            "capped": 0,
            "duplicate": 0,
        }

    def issue(self) -> str:
        """A new query id, signed: 16 random hex digits and 16 of their HMAC."""
        token = secrets.token_hex(8)
        return token + hmac.new(self.key, token.encode(), hashlib.sha256).hexdigest()[:16]

    def forged(self, query_id: str) -> bool:
        """Whether an id of the issued shape does not carry this sidecar's signature."""
        if len(query_id) != 32 or any(c not in "0123456789abcdef" for c in query_id):
            return False  # a client's own id: matched by its identity alone
        mac = hmac.new(self.key, query_id[:16].encode(), hashlib.sha256).hexdigest()[:16]
        return not hmac.compare_digest(mac, query_id[16:])

    def configure(self, routes: Sequence[tuple[str, str, ExperimentConfig]]) -> None:
        """The experiments of a (new) config, as (name, route, config): one whose settings
        changed starts over (its figures would mix two experiments); one no longer
        configured is dropped."""
        current = {}
        for name, route, config in routes:
            kept = self.experiments.get(name)
            if kept is not None and kept.config == config and kept.route == route:
                current[name] = kept
            else:
                if kept is not None:
                    log.info("experiment %s changed: its figures start over", name)
                current[name] = Experiment(name, route, config)
        self.experiments = current

    def stopped(self, name: str) -> bool:
        exp = self.experiments.get(name)
        return exp is not None and exp.stopped is not None

    def add(self, imp: Impression) -> bool:
        """Keep a served search for its clicks; False when its experiment is gone or its
        identity has had its share of searches (served, not counted)."""
        exp = self.experiments.get(imp.experiment)
        if exp is None:
            return False
        if not exp.within_cap(exp._searches, imp.identity, exp.config.max_searches_per_identity):
            self.rejected["capped"] += 1
            return False
        exp.add(imp)
        self.pending[imp.key] = imp
        self.pending.move_to_end(imp.key)
        self._by_id[imp.query_id] = imp.key
        while len(self.pending) > self.max_pending:
            key, _ = self.pending.popitem(last=False)
            if self._by_id.get(key[0]) == key:
                del self._by_id[key[0]]
        return True

    def _find(
        self, query_id: str, who: Callable[[ExperimentConfig], str | None] | None
    ) -> tuple[Impression | None, bool]:
        """The impression a click names, and whether one of another identity has that id."""
        candidates: list[str | None] = []
        if who is not None:
            for e in self.experiments.values():
                h = identity_hash(who(e.config))
                if h is not None and h not in candidates:
                    candidates.append(h)
        for identity in [*candidates, None]:
            imp = self.pending.get((query_id, identity))
            if imp is not None:
                return imp, False
        return None, query_id in self._by_id

    def click(
        self,
        query_id: str,
        object_id: Any,
        who: Callable[[ExperimentConfig], str | None] | None = None,
        when: float | None = None,
        identity: str | None = None,
    ) -> str:
        """A user clicked ``object_id`` on the page of ``query_id``: ``counted``, ``unmatched``
        (no impression of that id: a search without an experiment, or long gone) or why it did
        not count. ``who`` gives the clicker's identity under an experiment's identity settings
        (from the click's client_id and the write's headers); ``identity`` is its hash where it
        is known already (a stored click replayed)."""
        if self.verifies and identity is None and self.forged(query_id):
            self.rejected["forged"] += 1
            return "forged"
        if identity is not None:
            imp, other = self.pending.get((query_id, identity)), False
        else:
            imp, other = self._find(query_id, who)
        if imp is None:
            if other:
                self.rejected["identity"] += 1
                return "identity"
            self.unmatched += 1
            return "unmatched"
        exp = self.experiments.get(imp.experiment)
        if exp is None:
            self.unmatched += 1
            return "unmatched"
        if (when if when is not None else time.time()) - imp.time > self.click_window_s:
            self.rejected["late"] += 1
            return "late"
        key = str(object_id)
        position = next((p for p, i in enumerate(imp.ids) if str(i) == key), None)
        if position is None:
            self.rejected["not_served"] += 1
            return "not_served"
        try:
            counted = exp.click(imp, position)
        except _Rejected as r:
            self.rejected[r.why] += 1
            return r.why
        if not counted:
            self.rejected["duplicate"] += 1
            return "duplicate"
        self.last_identity = imp.identity
        if counted and exp.stopped is None and exp.config.stop_if_losing and exp.losing():
            exp.stopped = (
                f"treatment lost at p < {exp.config.guardrail_p} after {exp.queries} queries:"
                " control is served to everyone"
            )
            log.warning("experiment %s stopped: %s", exp.name, exp.stopped)
        return "counted"

    def replay(self, events: Sequence[SearchEvent], clicks: Sequence[ReplayedClick]) -> int:
        """Rebuild the figures from stored searches and clicks (after a restart); a search is
        counted by the experiment of its name when it ran under the same settings. Returns how
        many searches were taken back."""
        taken = 0
        for e in events:
            exp = self.experiments.get(e.experiment.name) if e.experiment else None
            if exp is None or e.experiment is None or e.experiment.settings != exp.settings:
                continue
            # shadow with its usual arms: the cluster's window against the route's order
            shadow = exp.config.mode == "shadow"
            imp = Impression.of(
                e,
                [b.id for b in e.baseline] if shadow else None,
                [f.id for f in e.final] if shadow else None,
            )
            if imp is not None:
                self.add(imp)
                taken += 1
        for c in clicks:
            self.click(c.query_id, c.object_id, c.who, c.time, c.identity)
        return taken

    def summaries(self) -> list[dict[str, Any]]:
        return [e.summary() for e in self.experiments.values()]

    def detail(self, name: str) -> dict[str, Any] | None:
        exp = self.experiments.get(name)
        if exp is None:
            return None
        return {**exp.summary(), "recent": [i.to_json() for i in reversed(exp.recent)]}
