"""The pure parts of experiments: statistics, team-draft interleaving, identities, UBI parsing."""

from __future__ import annotations

import json
import math
import random

import pytest

from sidecar.events.ubi import clicks, documents, write_kind
from sidecar.experiments import stats
from sidecar.experiments.assign import bucket, identity
from sidecar.experiments.interleave import team_draft


def test_sign_test_is_the_exact_binomial() -> None:
    assert stats.sign_test(9, 1) == pytest.approx(2 * 11 / 1024)  # 2 * P(X <= 1), n = 10
    assert stats.sign_test(5, 5) == 1.0
    assert stats.sign_test(0, 0) is None
    assert stats.sign_test(600, 400) == pytest.approx(2.6e-10, rel=0.05)  # large n stays exact


def test_wilson_interval_and_the_searches_still_needed() -> None:
    low, high = stats.wilson(60, 100)  # type: ignore[misc]
    assert (round(low, 4), round(high, 4)) == (0.5020, 0.6906)
    assert stats.wilson(0, 0) is None
    assert stats.sign_test_needed(0.5) is None
    n = stats.sign_test_needed(0.6)
    assert n is not None and 190 <= n <= 200  # the textbook figure for p = 0.6 at 5%, 80% power


def test_two_proportions() -> None:
    test = stats.two_proportions(100, 1000, 130, 1000)
    assert test is not None and test["difference"] == pytest.approx(0.03)
    assert 0.03 < test["p_value"] < 0.04 and test["low"] > 0
    assert stats.two_proportions(0, 0, 1, 1) is None


def test_team_draft_keeps_each_arms_order_and_takes_turns() -> None:
    rng = random.Random(3)
    for _ in range(200):
        a = rng.sample(range(30), rng.randrange(0, 15))
        b = rng.sample(range(30), rng.randrange(0, 15))
        merged, teams = team_draft(a, b, random.Random(rng.random()))
        assert sorted(merged) == sorted(set(a) | set(b)) and len(merged) == len(set(merged))
        for arm, order in (("control", a), ("treatment", b)):
            mine = [x for x, t in zip(merged, teams, strict=True) if t == arm]
            assert mine == [x for x in order if x in mine]  # each pick: its best not yet taken
    # two lists with nothing in common, as long as each other: the arms take turns in pairs
    for seed in range(50):
        merged, teams = team_draft(list(range(10)), list(range(10, 20)), random.Random(seed))
        for k in range(1, len(teams) + 1):
            assert abs(teams[:k].count("control") - teams[:k].count("treatment")) <= 1


def test_team_draft_of_one_list_credits_both_arms_by_coin() -> None:
    firsts = [team_draft([1, 2, 3], [1, 2, 3], random.Random(s))[1][0] for s in range(400)]
    assert 160 < firsts.count("treatment") < 240


def test_identity_order_and_a_stable_bucket() -> None:
    headers = {"x-user": "h1", "cookie": "a=1; uid=c1"}
    assert identity(["ubi.client_id", "header:X-User"], {"client_id": "u1"}, headers) == "ubi.client_id=u1"
    assert identity(["ubi.client_id", "header:X-User"], {}, headers) == "header:X-User=h1"
    assert identity(["cookie:uid"], None, headers) == "cookie:uid=c1"
    assert identity(["cookie:uid"], None, {"cookie": "garbage;;=="}) is None
    assert identity(["ubi.client_id"], {"client_id": {"nested": 1}}, {}) is None
    assert bucket("exp", "u1") == bucket("exp", "u1") != bucket("other", "u1")
    share = sum(bucket("exp", f"u{i}") < 0.3 for i in range(10_000)) / 10_000
    assert math.isclose(share, 0.3, abs_tol=0.02)


def test_ubi_writes_and_clicks_are_read_as_the_cluster_would() -> None:
    assert write_kind("POST", "/ubi_events/_doc", "ubi_events") == "doc"
    assert write_kind("PUT", "/ubi_events/_doc/abc", "ubi_events") == "doc"
    assert write_kind("PUT", "/ubi_events/_create/abc", "ubi_events") == "doc"
    assert write_kind("POST", "/_bulk", "ubi_events") == "bulk"
    assert write_kind("POST", "/products/_bulk", "ubi_events") is None
    assert write_kind("GET", "/ubi_events/_doc/abc", "ubi_events") is None
    assert write_kind("POST", "/products/_doc", "ubi_events") is None
    click = {"action_name": "click", "query_id": "q", "event_attributes": {"object": {"object_id": "7"}}}
    lines = [
        {"index": {"_index": "products"}},
        {"action_name": "click", "query_id": "q", "event_attributes": {"object": {"object_id": "x"}}},
        {"update": {"_index": "ubi_events", "_id": "1"}},
        {"doc": click},
        {"delete": {"_index": "ubi_events", "_id": "2"}},
        {"create": {"_index": "ubi_events"}},
        click,
    ]
    body = ("\n".join(json.dumps(x) for x in lines) + "\nnot json\n").encode()
    found = clicks(documents("bulk", body, "/_bulk", "ubi_events"), ["click"])
    assert [(c.query_id, c.object_id) for c in found] == [("q", "7")]
    assert list(documents("doc", b"{not json", "/ubi_events/_doc", "ubi_events")) == []
    odd = [{"action_name": "click", "query_id": ["q"]}, "text", {"action_name": "view", "query_id": "q"}]
    assert clicks(odd, ["click"]) == []
