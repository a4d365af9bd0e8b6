"""The Grafana dashboard and the Prometheus alert rules (deploy/) name only metrics the sidecar
exports, and the rules pass promtool's checks and their own unit tests."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RunningSidecar

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "rerank-sidecar.json"
RULES = ROOT / "deploy" / "prometheus" / "rerank-sidecar-rules.yml"
_NAME = re.compile(r"\brerank_sidecar_[a-z_]+\b")
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}


def exported(sidecar: RunningSidecar) -> set[str]:
    """The sample names the sidecar's /_sidecar/metrics can give, from its # TYPE lines (a
    labelled family with no sample yet is still declared)."""
    text = httpx.get(f"{sidecar.admin_url}/_sidecar/metrics", timeout=30).text
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + s for s in _SUFFIXES.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


def dashboard_exprs() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p["targets"]]


def rule_exprs() -> list[tuple[str, str]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [(r["alert"], r["expr"]) for g in groups for r in g["rules"]]


def test_every_metric_a_panel_or_a_rule_names_is_one_the_sidecar_exports(
    sidecar: RunningSidecar, proxied: httpx.Client
) -> None:
    proxied.post("/kb/_search", json={"query": {"match": {"text": "adapters"}}})
    names = exported(sidecar)
    assert "rerank_sidecar_searches_total" in names and "rerank_sidecar_circuit_open" in names
    used: set[str] = set()
    for where, expr in dashboard_exprs() + rule_exprs():
        found = set(_NAME.findall(expr))
        assert found, f"{where}: names no rerank_sidecar metric"
        unknown = found - names
        assert not unknown, f"{where}: {sorted(unknown)} are not exported (exported: {sorted(names)})"
        used |= found
    # what the issue asks to see is on the board
    board = {n for _, e in dashboard_exprs() for n in _NAME.findall(e)}
    for wanted in (
        "rerank_sidecar_searches_total",
        "rerank_sidecar_stage_seconds_bucket",
        "rerank_sidecar_queue_depth",
        "rerank_sidecar_top_score_bucket",
        "rerank_sidecar_cache_hits_total",
        "rerank_sidecar_experiment_win_rate",
    ):
        assert wanted in board
    alerts = {a for a, _ in rule_exprs()}
    assert {
        "RerankSidecarFallbackRateHigh",
        "RerankSidecarP99OverTimeout",
        "RerankSidecarCircuitOpen",
        "RerankSidecarEventWriterBehind",
        "RerankSidecarConfigStoreDegraded",
    } <= alerts


def test_the_labels_the_rules_group_by_are_the_metrics_own(
    sidecar: RunningSidecar, proxied: httpx.Client
) -> None:
    proxied.post("/kb/_search", json={"query": {"match": {"text": "adapters"}}})
    text = httpx.get(f"{sidecar.admin_url}/_sidecar/metrics", timeout=30).text
    assert re.search(r'^rerank_sidecar_search_seconds_bucket\{le="[^"]+",route="kb,docs-\*"\}', text, re.M)
    assert re.search(r'^rerank_sidecar_route_timeout_seconds\{route="kb,docs-\*"\} ', text, re.M)
    assert re.search(r'^rerank_sidecar_circuit_open\{model="minilm"\} 0\.0$', text, re.M)
    assert re.search(r'^rerank_sidecar_searches_total\{reason="[^"]*",status="applied"\}', text, re.M)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool: apt-get install prometheus")
def test_promtool_checks_the_rules_and_runs_their_unit_tests() -> None:
    check = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run(
        ["promtool", "test", "rules", RULES.with_suffix(".test.yml").name],
        cwd=RULES.parent,
        capture_output=True,
        text=True,
    )
    assert unit.returncode == 0, unit.stdout + unit.stderr
