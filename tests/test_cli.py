"""The command line, run for real: check-config, serve failing to start, tui arguments."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


GOOD = """
listen: 127.0.0.1:9200
upstream: {url: http://127.0.0.1:9201, timeout_s: 30}
admin: {listen: 127.0.0.1:9301}
models:
  minilm: {backend: bi-encoder, model: all-MiniLM-L6-v2}
routes:
  - indices: ["docs*", "kb"]
    model: minilm
    window: 100
    fields: [title, text]
    template: "{title}\\n{text}"
    timeout_ms: 2000
"""

BAD = [
    (GOOD.replace("window: 100", "window: 100\n    windw: 5"), "routes.0.windw: unknown key"),
    (GOOD.replace("model: minilm\n", "model: nope\n"), "routes.0.model: unknown model 'nope'"),
    (GOOD.replace("window: 100", "window: -3"), "routes.0.window"),
    (GOOD.replace("backend: bi-encoder", "backend: magic"), "models.minilm.backend"),
    (GOOD.replace("listen: 127.0.0.1:9200", "listen: nowhere"), "listen: expected host:port"),
    (GOOD.replace("url: http://127.0.0.1:9201", "url: ftp://x"), "upstream.url"),
    (GOOD.replace("{title}", "{titel}"), "placeholder {titel}"),
    (GOOD.replace("fields: [title, text]", "fields: []"), "routes.0.fields"),
    # what serve would refuse, check-config refuses too
    (GOOD.replace("admin: {listen: 127.0.0.1:9301}", "admin: {listen: 0.0.0.0:9301}"), "is not loopback"),
    (GOOD.replace("timeout_s: 30}", "timeout_s: 30, ca_certs: /nonexistent/ca.pem}"), "upstream.ca_certs"),
    ("routes: [\n", "invalid YAML"),
    ("- just\n- a list\n", "mapping at the top level"),
]


def test_a_good_file(tmp_path: Path) -> None:
    f = tmp_path / "good.yaml"
    f.write_text(GOOD)
    assert _check(f).returncode == 0


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_files_exit_2_with_one_line(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    r = _check(f)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert message in lines[0]
    assert "Traceback" not in r.stderr


def test_missing_file(tmp_path: Path) -> None:
    r = _check(tmp_path / "nope.yaml")
    assert r.returncode == 2 and "cannot read" in r.stderr


def test_admin_beyond_loopback_needs_a_token() -> None:
    from sidecar.config import ConfigError, parse_config
    from sidecar.server import admin_token

    cfg = parse_config({"admin": {"listen": "0.0.0.0:9301"}})
    with pytest.raises(ConfigError, match=r"admin\.listen"):
        admin_token(cfg)
    assert admin_token(parse_config({"admin": {"listen": "0.0.0.0:9301", "token": "s3cret"}})) == "s3cret"


def test_tui_takes_several_admins_and_a_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import tui.app
    from sidecar.cli import main

    seen: list[tuple[list[str], str | None]] = []
    monkeypatch.setattr(tui.app, "run", lambda urls, token: seen.append((list(urls), token)))
    monkeypatch.setenv("RERANK_SIDECAR_ADMIN_TOKEN", "from-env")
    assert main(["tui", "--admin", "http://a:9301", "--admin", "http://b:9301"]) == 0
    assert main(["tui", "--token", "flag"]) == 0
    assert seen == [(["http://a:9301", "http://b:9301"], "from-env"), (["http://127.0.0.1:9301"], "flag")]


def test_defaults_that_depend_on_the_model_kind() -> None:
    from sidecar.config import parse_config

    cfg = parse_config(
        {
            "models": {
                "bi": {"backend": "bi-encoder", "model": "m"},
                "q": {"backend": "qwen3", "model": "m"},
            },
            "routes": [
                {"indices": ["a"], "model": "bi", "fields": ["t"]},
                {"indices": ["b"], "model": "q", "fields": ["t"]},
                {"indices": ["c"], "model": "bi", "fields": ["t"], "fusion": "linear"},
            ],
        }
    )
    assert [r.fusion for r in cfg.routes] == ["auto", "auto", "linear"]  # one default for every model
    assert cfg.models["bi"].long_docs == "chunk" and cfg.models["q"].long_docs == "truncate"
    # the resolved values survive a round trip through the admin API's JSON
    assert parse_config(cfg.model_dump(mode="json")) == cfg


def test_serve_exits_with_one_line_when_a_model_cannot_load(tmp_path: Path) -> None:
    cfg = tmp_path / "co.yaml"
    cfg.write_text(
        "listen: 127.0.0.1:0\nadmin: {listen: 127.0.0.1:0}\nmodels:\n"
        "  co: {backend: remote, api: cohere, url: 'https://api.cohere.com', model: rerank-v3.5,"
        " api_key_env: RERANK_TEST_UNSET_KEY}\n"
        "routes:\n  - {indices: ['*'], model: co, fields: [text]}\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "serve", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == (
        "rerank-sidecar: config error: models.co: cannot load: environment variable RERANK_TEST_UNSET_KEY is not set"
    )


def test_routes_are_named_once() -> None:
    from sidecar.config import ConfigError, parse_config

    models = {"m": {"backend": "bi-encoder", "model": "m"}}
    route = {"model": "m", "fields": ["t"]}
    cfg = parse_config(
        {
            "models": models,
            "routes": [{**route, "indices": ["a", "b*"]}, {**route, "indices": ["c"], "name": "cee"}],
        }
    )
    assert [r.name for r in cfg.routes] == ["a,b*", "cee"]
    with pytest.raises(ConfigError, match=r"routes\.1\.name: 'a' is the name of routes\.0 too"):
        parse_config({"models": models, "routes": [{**route, "indices": ["a"]}, {**route, "indices": ["a"]}]})
    two = parse_config(
        {"models": models, "routes": [{**route, "indices": ["a"]}, {**route, "indices": ["a"], "name": "a2"}]}
    )
    assert parse_config(two.model_dump(mode="json")) == two


def test_version_and_help_name_every_command() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "--version"], capture_output=True, text=True
    )
    assert version.returncode == 0 and version.stdout.startswith("rerank-sidecar ")
    helped = subprocess.run([sys.executable, "-m", "sidecar.cli", "--help"], capture_output=True, text=True)
    named = helped.stdout.split("Commands:")[1].split("(")[0].replace(",", " ").split()
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(named) == sorted(sub.choices)


def test_serve_says_it_is_stopping_and_stops(tmp_path: Path) -> None:
    cfg = tmp_path / "remote.yaml"
    cfg.write_text(
        "listen: 127.0.0.1:0\nadmin: {listen: 127.0.0.1:0}\nupstream: {url: 'http://127.0.0.1:9'}\n"
        "models:\n  tei: {backend: remote, api: tei, url: 'http://127.0.0.1:9'}\n"
        "routes:\n  - {indices: ['*'], model: tei, fields: [text]}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar.cli", "serve", "--config", str(cfg)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        started: list[str] = []
        while not any("proxy on" in line for line in started) and len(started) < 100:
            started.append(proc.stderr.readline())
            assert started[-1], started  # it did not exit
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert "stopping: no new connections" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
