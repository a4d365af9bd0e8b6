"""``eval --tune``: collection through a real sidecar, replay equal to the live sidecar, cross-
validation, calibration fits, writing the YAML and applying to a running sidecar."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from osmem_server import OsmemServer

from sidecar.config import RouteConfig, load_config, parse_config
from sidecar.engine.bi_encoder import BiEncoderBackend
from sidecar.engine.calibration import Calibration, fit
from sidecar.eval.collect import Window, collect, replay
from sidecar.eval.dataset import load_dataset
from sidecar.eval.index import DEFAULT_QUERY, ensure_index, fill
from sidecar.eval.runner import run_setting, setting_config
from sidecar.eval.tune import folds, grid, tune
from sidecar.eval.tune_command import apply_remote, write_config
from tests.conftest import RunningSidecar

ROOT = Path(__file__).resolve().parents[2]
SLICE = ROOT / "tests" / "data" / "scifact-slice"
ARTICLE = ROOT / "bench" / "data"


def _config(upstream: str, **route: Any) -> dict[str, Any]:
    return {
        "upstream": {"url": upstream},
        "models": {"m": {"backend": "bi-encoder", "model": "all-MiniLM-L6-v2", "device": "cpu"}},
        "routes": [{"indices": ["*"], "model": "m", "fields": ["title", "text"], "window": 40, **route}],
    }


@pytest.fixture(scope="module")
def minilm() -> BiEncoderBackend:
    return BiEncoderBackend("all-MiniLM-L6-v2", device="cpu", chunk=True)


def test_replay_gives_the_order_the_live_sidecar_gives(osmem: OsmemServer, minilm: BiEncoderBackend) -> None:
    ds = load_dataset(SLICE)
    with httpx.Client(base_url=osmem.url, timeout=60) as c:
        ensure_index(c, "tune-slice", ds)
    base = parse_config(_config(osmem.url))
    windows = asyncio.run(
        collect(
            setting_config(base, None, None), "tune-slice", ds, DEFAULT_QUERY, 40, 4, backends={"m": minilm}
        )
    )
    assert set(windows) == set(ds.queries) and all(w.scores is not None for w in windows.values())
    lengths = {len(w.ids) for w in windows.values()}
    assert max(lengths) <= 40 and min(lengths) < 40  # full windows and windows holding every hit
    for route in (
        {},
        {"fusion": "replace", "window": 10},
        {"fusion": "rrf", "rrf_k": 20, "min_score": 0.3},
        {"fusion": "linear", "fusion_alpha": 0.7, "window": 25},
    ):
        config = setting_config(parse_config(_config(osmem.url, **route)), None, None)
        live = asyncio.run(run_setting(config, "tune-slice", ds, DEFAULT_QUERY, 4, backends={"m": minilm}))
        replayed = {q: replay(w, config.routes[0])[: len(live.runs[q])] for q, w in windows.items()}
        assert replayed == live.runs, route


def _windows(n: int, seed: int) -> tuple[dict[str, Window], dict[str, dict[str, int]]]:
    """Queries whose relevant document the model puts first while the cluster puts it third."""
    rng = random.Random(seed)
    windows, qrels = {}, {}
    for q in range(n):
        ids = tuple(f"q{q}-d{i}" for i in range(30))
        cluster = tuple(float(30 - i) for i in range(30))
        model = [rng.random() * 0.5 for _ in range(30)]
        model[2] = 0.9
        windows[f"q{q:03d}"] = Window(ids, cluster, (tuple(model),))
        qrels[f"q{q:03d}"] = {ids[2]: 1}
    return windows, qrels


def test_tune_cross_validates_and_is_the_same_on_every_run() -> None:
    windows, qrels = _windows(40, 1)
    route = RouteConfig(indices=["*"], model="m", fields=["t"], window=30, fusion="rrf")
    first = tune(route, {"original": windows}, qrels, k=4)
    again = tune(route, {"original": windows}, qrels, k=4)
    assert first == again
    assert [f.queries for f in first.folds] == [10, 10, 10, 10]
    parts = folds(list(windows), 4)
    assert sorted(q for p in parts for q in p) == sorted(windows)
    # the model alone is right every time: every fold chooses an order led by the model
    assert first.held_out["hit@1"] == 40 and first.configured["hit@1"] < 40
    assert first.best.apply(route).fusion in ("replace", "auto", "linear")
    assert first.best_in_sample == 1.0


def test_the_configured_route_wins_ties() -> None:
    windows, qrels = _windows(12, 2)
    route = RouteConfig(indices=["*"], model="m", fields=["t"], window=30, fusion="replace")
    result = tune(route, {"original": windows}, qrels, k=3)
    assert result.best.changes(route) == {}  # nothing beats the model's order: keep the config
    assert all(f.chosen.changes(route) == {} for f in result.folds)


def test_the_grid_covers_the_issue_keys() -> None:
    route = RouteConfig(indices=["*"], model="m", fields=["t"], window=100, rewrite={"max_variants": 2})
    settings = grid(route, ["original", "expanded"], 100)
    keys = {k for s in settings for k, _ in s.route} | {
        f"rewrite.{k}" for s in settings for k, _ in s.rewrite
    }
    assert keys >= {
        "fusion",
        "fusion_alpha",
        "rrf_k",
        "window",
        "min_score",
        "rewrite.aggregate",
        "rewrite.retrieval",
    }
    assert settings[0].apply(route) == route.model_copy(update={"rewrite": route.rewrite})


def test_calibration_fit_recovers_a_logistic() -> None:
    rng = random.Random(3)
    truth = Calibration(center=0.45, scale=0.08)
    raw = [rng.uniform(0, 1) for _ in range(20000)]
    relevant = [rng.random() < truth(x) for x in raw]
    fitted = fit(raw, relevant)
    # balanced classes move the centre to where relevant and not are equally dense; the scale stays
    assert fitted.scale == pytest.approx(truth.scale, rel=0.1)
    assert 0.3 < fitted.center < 0.6
    assert truth.raw(truth(0.37)) == pytest.approx(0.37)
    with pytest.raises(ValueError):
        fit([0.1, 0.2], [False, False])


def test_template_placeholders_and_metadata() -> None:
    ds = load_dataset(ARTICLE / "article-dev")
    meta = ds.metadata["g01"]
    assert meta["context"] == "Docker 容器" and meta["kind"] == "vague"
    body = fill(
        {"q": {"term": {"group": "{metadata.group}"}, "m": "{query} {metadata.none}"}}, "怎么重启", meta
    )
    assert body == {"q": {"term": {"group": "g01"}, "m": "怎么重启 "}}
    doc = next(ds.corpus())
    assert doc["group"].startswith("g") and {"_id", "title", "text"} <= set(doc)


CONFIG_TEXT = """\
# tuned by a test: this comment must survive
models:
  m:
    backend: bi-encoder   # the packaged MiniLM
    model: all-MiniLM-L6-v2
routes:
  - indices: ["*"]
    model: m
    fields: [title, text]
    min_score: 0.2        # a threshold the tuner removes
    rewrite:
      max_variants: 2
"""


def test_write_keeps_comments_and_refuses_a_config_that_would_not_load(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG_TEXT)
    changes = {"fusion": "linear", "fusion_alpha": 0.7, "min_score": None, "rewrite": {"aggregate": "mean"}}
    write_config(path, 0, changes, "m", Calibration(0.41, 0.09))
    text = path.read_text()
    assert "# tuned by a test: this comment must survive" in text and "# the packaged MiniLM" in text
    cfg = load_config(path)
    route = cfg.routes[0]
    assert (route.fusion, route.fusion_alpha, route.min_score) == ("linear", 0.7, None)
    assert route.rewrite is not None and route.rewrite.aggregate == "mean" and route.rewrite.max_variants == 2
    calibration = cfg.models["m"].calibration
    assert calibration is not None and (calibration.center, calibration.scale) == (0.41, 0.09)
    before = path.read_text()
    from sidecar.eval.runner import EvalError

    with pytest.raises(EvalError, match="would not load"):
        write_config(path, 0, {"fusion": "nonsense"}, "m", None)
    assert path.read_text() == before


def test_apply_puts_the_setting_on_a_running_sidecar(osmem: OsmemServer, tmp_path: Path) -> None:
    data = _config(osmem.url)
    data["routes"][0]["indices"] = ["kb"]
    data.update(listen="127.0.0.1:0", admin={"listen": "127.0.0.1:0", "token": "tok"})
    running = RunningSidecar(parse_config(data))
    try:
        said = apply_remote(running.admin_url, "kb", {"fusion": "replace", "window": 20}, "m", None, "tok")
        assert "routes.0" in said
        live = httpx.get(
            running.admin_url + "/_sidecar/config", headers={"authorization": "Bearer tok"}
        ).json()
        assert live["routes"][0]["fusion"] == "replace" and live["routes"][0]["window"] == 20
        from sidecar.eval.runner import EvalError

        with pytest.raises(EvalError, match="401"):
            apply_remote(running.admin_url, "kb", {"fusion": "rrf"}, "m", None, "wrong")
    finally:
        running.close()


def test_the_command_tunes_the_article_set_and_writes_the_route(tmp_path: Path) -> None:
    text = (ROOT / "configs" / "eval" / "article-rewrite.yaml").read_text()
    text = text.replace("../rules/article.yaml", str(ROOT / "configs" / "rules" / "article.yaml"))
    outputs = []
    for name, extra in (("a", []), ("b", ["--write", "{cfg}", "--calibrate"])):
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(text)
        out = subprocess.run(
            [sys.executable, "-m", "sidecar.cli", "eval", str(ARTICLE / "article-dev"), "--embedded", "--quiet",
             "--query", str(ARTICLE / "article-query.json"), "--mapping", str(ARTICLE / "article-mapping.json"),
             "--config", str(cfg), "--tune", "--folds", "3", "--no-cache", *(a.format(cfg=cfg) for a in extra)],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        outputs.append(out.stdout.replace(str(cfg), "CONFIG").splitlines())
    plain, written = outputs
    assert plain[0].startswith(
        f"{ARTICLE / 'article-dev'}: 30 queries; route 0 of CONFIG (minilm); 3 folds over"
    )
    assert any(ln.startswith("held out (each query once): tuned") for ln in plain)
    assert plain[-1].startswith("calibration of minilm fitted") and plain[-1].endswith(
        "(--calibrate writes it)"
    )
    # the same inputs, the same report; then the file is written
    assert written[:-2] == plain[:-1] and written[-1] == "wrote CONFIG"
    cfg = load_config(tmp_path / "b.yaml")
    assert cfg.models["minilm"].calibration is not None
    assert "# The article-style set" in (tmp_path / "b.yaml").read_text()
