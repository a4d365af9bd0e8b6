"""Defects 10, 11 and the watcher of 16: credentials in URLs are masked wherever they are shown
or logged, a half-written config file is refused (the last good one stays), and a busy log file
beside the config does not keep the watcher logging."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import httpx
import pytest
import yaml
from osmem_server import OsmemServer

from sidecar.config import load_config, parse_config
from sidecar.masking import mask_url
from testkit.fleet import free_port
from testkit.users import minilm_config
from tests.adversarial.conftest import poll
from tests.conftest import CORPUS, RunningSidecar, index_corpus

INDEX = "adv-cfg-kb"
ROUTE = {"name": "kb", "indices": [INDEX], "model": "minilm", "window": 8, "fields": ["title", "text"]}
SECRET = "s3cr3t-pa55"


def test_the_mask_covers_every_url_in_a_text() -> None:
    text = f"redis://:{SECRET}@cache:6379/0 and https://admin:{SECRET}@host:9200/x, http://plain:1"
    masked = mask_url(text)
    assert SECRET not in masked and "redis://***@cache:6379/0" in masked and "http://plain:1" in masked


def test_credentials_in_urls_are_never_shown_or_logged(
    osmem: OsmemServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    index_corpus(osmem.url, INDEX, CORPUS)
    cache = f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"  # nothing listens there: an outage
    cfg = minilm_config(
        osmem.url,
        [ROUTE],
        cache={"url": cache, "retry_s": 0.1},
        events={"url": f"http://user:{SECRET}@127.0.0.1:{free_port()}", "index": "adv-cfg-events"},
    )
    running = RunningSidecar(parse_config(cfg))
    try:
        for _ in range(3):
            httpx.post(f"{running.url}/{INDEX}/_search", json={"query": {"match": {"text": "memory"}}})
            time.sleep(0.2)
        shown = httpx.get(f"{running.admin_url}/_sidecar/config").text
        health = httpx.get(f"{running.admin_url}/_sidecar/health")
        poll(
            lambda: (
                httpx.get(f"{running.admin_url}/_sidecar/health").json()["shared_cache"]["error"] is not None
            )
        )
        health = httpx.get(f"{running.admin_url}/_sidecar/health")
        assert SECRET not in shown and "***@" in shown
        assert SECRET not in health.text
    finally:
        running.close()
    assert "shared cache" in caplog.text
    assert SECRET not in caplog.text


@pytest.fixture
def watched(osmem: OsmemServer, tmp_path: Path) -> tuple[RunningSidecar, Path]:
    index_corpus(osmem.url, INDEX, CORPUS)
    path = tmp_path / "sidecar.yaml"
    path.write_text(yaml.safe_dump(minilm_config(osmem.url, [ROUTE])))
    running = RunningSidecar(
        load_config(path), config_path=path, reload=lambda: load_config(path), watch_interval_s=0.1
    )
    return running, path


def _routes(s: RunningSidecar) -> int:
    return len(httpx.get(f"{s.admin_url}/_sidecar/config").json()["routes"])


def test_an_empty_or_cut_short_config_is_refused_and_the_last_good_one_stays(
    watched: tuple[RunningSidecar, Path], caplog: pytest.LogCaptureFixture
) -> None:
    running, path = watched
    try:
        good = path.read_text()
        data = yaml.safe_load(good)
        cut = yaml.safe_dump({k: v for k, v in data.items() if k != "routes"})  # stopped before routes:
        for text in ("", cut):
            path.write_text(text)
            poll(lambda: "not applied" in caplog.text)
            caplog.clear()
            assert _routes(running) == 1
            r = httpx.post(f"{running.url}/{INDEX}/_search", json={"query": {"match": {"text": "memory"}}})
            assert r.headers["x-rerank"] == "applied"
        path.write_text(yaml.safe_dump({**data, "routes": []}))  # said so: every route goes
        poll(lambda: _routes(running) == 0)
    finally:
        running.close()


def test_a_log_file_beside_the_config_does_not_wake_the_watcher(
    watched: tuple[RunningSidecar, Path], caplog: pytest.LogCaptureFixture
) -> None:
    running, path = watched
    caplog.set_level(logging.INFO)
    try:
        log = path.parent / "sidecar.log"
        for i in range(30):
            with log.open("a") as f:
                f.write(f"line {i}\n")
            time.sleep(0.03)
        time.sleep(0.3)
        assert "change detected" not in caplog.text and "changes detected" not in caplog.text
        data = yaml.safe_load(path.read_text())
        data["routes"][0]["window"] = 6
        path.write_text(yaml.safe_dump(data))  # the config's own change is still seen
        poll(lambda: httpx.get(f"{running.admin_url}/_sidecar/config").json()["routes"][0]["window"] == 6)
    finally:
        running.close()
