"""The admin API: token, config read/replace/persist, hot reload of the file, the rerank sandbox."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from osmem_server import OsmemServer

from sidecar.config import load_config
from tests.conftest import RunningSidecar

TOKEN = "t0k3n-for-tests"
QUERY = {"query": {"match": {"text": "which LoRA rank should I use"}}, "size": 12}


def _config(osmem: OsmemServer) -> dict[str, Any]:
    return {
        "listen": "127.0.0.1:0",
        "upstream": {"url": osmem.url},
        "admin": {"listen": "127.0.0.1:0", "token": TOKEN},
        "models": {"minilm": {"backend": "bi-encoder", "model": "all-MiniLM-L6-v2", "device": "cpu"}},
        "routes": [{"indices": ["kb"], "model": "minilm", "window": 12, "fields": ["title", "text"]}],
    }


@pytest.fixture
def admin_sidecar(osmem: OsmemServer, tmp_path: Path) -> Iterator[tuple[RunningSidecar, Path]]:
    path = tmp_path / "sidecar.yaml"
    path.write_text(yaml.safe_dump(_config(osmem)))
    running = RunningSidecar(
        load_config(path), config_path=path, reload=lambda: load_config(path), watch_interval_s=0.1
    )
    yield running, path
    running.close()


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def test_token_is_enforced(admin_sidecar: tuple[RunningSidecar, Path]) -> None:
    running, _ = admin_sidecar
    url = running.admin_url + "/_sidecar/health"
    assert httpx.get(url).status_code == 401
    wrong = httpx.get(url, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "security_exception"
    assert httpx.get(url, headers=_auth()).status_code == 200


def test_unknown_paths_and_methods_answer_in_opensearch_error_shape(
    admin_sidecar: tuple[RunningSidecar, Path],
) -> None:
    running, _ = admin_sidecar
    base = running.admin_url + "/_sidecar"
    missing = httpx.get(base + "/nothing-here", headers=_auth())
    assert missing.status_code == 404
    assert (
        missing.json()
        == {
            "error": missing.json()["error"],
            "status": 404,
        }
        and missing.json()["error"]["type"] == "resource_not_found_exception"
    )
    assert "GET /_sidecar/nothing-here" in missing.json()["error"]["reason"]
    wrong = httpx.delete(base + "/health", headers=_auth())
    assert wrong.status_code == 405 and wrong.json()["status"] == 405
    reason = wrong.json()["error"]["reason"]
    assert "method [DELETE], allowed: [" in reason and "GET" in reason and "GET" in wrong.headers["allow"]
    assert "PUT" in httpx.delete(base + "/config", headers=_auth()).json()["error"]["reason"]
    # a trailing slash names the same endpoint, as before
    assert httpx.get(base + "/health/", headers=_auth()).json()["status"] == "ok"
    # the stream refuses a wrong token like every other endpoint
    assert httpx.get(base + "/events/stream").status_code == 401


def test_get_config_redacts_the_token(admin_sidecar: tuple[RunningSidecar, Path]) -> None:
    running, _ = admin_sidecar
    cfg = httpx.get(running.admin_url + "/_sidecar/config", headers=_auth()).json()
    assert cfg["admin"]["token"] == "<redacted>"
    assert TOKEN not in httpx.get(running.admin_url + "/_sidecar/config", headers=_auth()).text
    assert cfg["routes"][0]["window"] == 12


def test_put_config_applies_persists_and_rejects_bad_input(
    admin_sidecar: tuple[RunningSidecar, Path],
) -> None:
    running, path = admin_sidecar
    before = httpx.post(running.url + "/kb/_search", json=QUERY)
    assert before.headers["x-rerank-cut"] == "0"
    cfg = httpx.get(running.admin_url + "/_sidecar/config", headers=_auth()).json()
    cfg["routes"][0]["min_score"] = 0.3
    r = httpx.put(running.admin_url + "/_sidecar/config", json=cfg, headers=_auth())
    assert r.status_code == 200, r.text
    assert r.json()["persisted"] == str(path)
    after = httpx.post(running.url + "/kb/_search", json=QUERY)
    assert int(after.headers["x-rerank-cut"]) > 0
    assert yaml.safe_load(path.read_text())["routes"][0]["min_score"] == 0.3
    assert yaml.safe_load(path.read_text())["admin"]["token"] == TOKEN
    assert (path.parent / "sidecar.yaml.bak").exists()
    cfg["routes"][0]["window"] = -5
    bad = httpx.put(running.admin_url + "/_sidecar/config", json=cfg, headers=_auth())
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "config_exception"
    assert "routes.0.window" in bad.json()["error"]["reason"]
    assert (
        httpx.get(running.admin_url + "/_sidecar/config", headers=_auth()).json()["routes"][0]["window"] == 12
    )
    cfg["routes"][0]["window"] = 12
    cfg["listen"] = "127.0.0.1:1"
    assert (
        "needs a restart"
        in httpx.put(running.admin_url + "/_sidecar/config", json=cfg, headers=_auth()).json()["error"][
            "reason"
        ]
    )
    garbage = httpx.put(running.admin_url + "/_sidecar/config", content=b"{nope", headers=_auth())
    assert garbage.status_code == 400 and garbage.json()["error"]["type"] == "parse_exception"


def _wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_the_config_file_is_watched(
    admin_sidecar: tuple[RunningSidecar, Path], caplog: pytest.LogCaptureFixture
) -> None:
    running, path = admin_sidecar
    data = yaml.safe_load(path.read_text())
    data["routes"][0]["max_hits"] = 3
    path.write_text(yaml.safe_dump(data))
    assert _wait_for(
        lambda: len(httpx.post(running.url + "/kb/_search", json=QUERY).json()["hits"]["hits"]) == 3
    )
    data["routes"][0]["windw"] = 3
    path.write_text(yaml.safe_dump(data))
    assert _wait_for(lambda: "routes.0.windw: unknown key" in caplog.text)
    assert len(httpx.post(running.url + "/kb/_search", json=QUERY).json()["hits"]["hits"]) == 3


def test_sandbox_scores_without_the_cluster(admin_sidecar: tuple[RunningSidecar, Path]) -> None:
    running, _ = admin_sidecar
    docs = [
        "Items can be returned within 30 days.",
        "Set the LoRA rank to 8 or 16.",
        "Java has eight primitive types.",
    ]
    r = httpx.post(
        running.admin_url + "/_sidecar/rerank",
        json={"query": "lora rank", "documents": docs},
        headers=_auth(),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "minilm"
    assert body["scores"] == pytest.approx(running.scores("minilm", "lora rank", docs), abs=1e-6)
    assert body["ranking"][0]["index"] == 1
    for bad, reason in (
        ({"documents": docs}, "query"),
        ({"query": "q", "documents": "nope"}, "documents"),
        ({"query": "q", "documents": docs, "model": "other"}, "unknown model"),
    ):
        r = httpx.post(running.admin_url + "/_sidecar/rerank", json=bad, headers=_auth())
        assert r.status_code == 400 and reason in r.json()["error"]["reason"]


def test_a_rules_file_is_watched_too(
    osmem: OsmemServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("abbreviations: {k8s: Kubernetes}\n")
    data = _config(osmem)
    data["routes"][0]["rewrite"] = {"rules": "rules.yaml"}
    path = tmp_path / "sidecar.yaml"
    path.write_text(yaml.safe_dump(data))
    running = RunningSidecar(
        load_config(path), config_path=path, reload=lambda: load_config(path), watch_interval_s=0.1
    )
    try:

        def variants() -> list[str]:
            body = {"query": {"match": {"text": "k8s pod"}}}
            r = httpx.post(running.url + "/kb/_search", json=body, headers={"X-Rerank-Explain": "1"})
            return [v["text"] for v in r.json()["_rerank"]["variants"]]

        assert variants() == ["Kubernetes pod"]
        rules.write_text("abbreviations: {k8s: Kubernetes, pod: container group}\n")
        assert _wait_for(lambda: variants() == ["Kubernetes container group"])
        rules.write_text("patterns: ['(x => y']\n")
        assert _wait_for(lambda: "routes.0.rewrite.rules" in caplog.text and "invalid pattern" in caplog.text)
        assert variants() == ["Kubernetes container group"]
    finally:
        running.close()


def test_a_configmap_style_symlink_swap_is_seen(osmem: OsmemServer, tmp_path: Path) -> None:
    """Kubernetes mounts a ConfigMap as sidecar.yaml -> ..data/sidecar.yaml, ..data -> a dated
    folder, and updates it by writing a new folder and renaming a new ..data link over the old."""
    mount = tmp_path / "mount"
    mount.mkdir()

    def publish(version: int, data: dict[str, Any]) -> None:
        folder = mount / f"..2026_12_02_{version}"
        folder.mkdir()
        (folder / "sidecar.yaml").write_text(yaml.safe_dump(data))
        (mount / "..data_tmp").symlink_to(folder.name)
        (mount / "..data_tmp").rename(mount / "..data")

    data = _config(osmem)
    publish(1, data)
    path = mount / "sidecar.yaml"
    path.symlink_to("..data/sidecar.yaml")
    running = RunningSidecar(
        load_config(path), config_path=path, reload=lambda: load_config(path), watch_interval_s=0.1
    )
    try:
        assert len(httpx.post(running.url + "/kb/_search", json=QUERY).json()["hits"]["hits"]) > 2
        data["routes"][0]["max_hits"] = 2
        publish(2, data)
        assert _wait_for(
            lambda: len(httpx.post(running.url + "/kb/_search", json=QUERY).json()["hits"]["hits"]) == 2
        )
    finally:
        running.close()


def test_a_config_file_that_cannot_be_written_changes_the_running_config_and_says_so(
    admin_sidecar: tuple[RunningSidecar, Path],
) -> None:
    """As on a Kubernetes ConfigMap mount (read-only): the change runs, the answer says it was
    not kept, and the file is as it was (here the backup's path is a folder: the write fails)."""
    running, path = admin_sidecar
    (path.parent / "sidecar.yaml.bak").mkdir()
    text = path.read_text()
    cfg = httpx.get(running.admin_url + "/_sidecar/config", headers=_auth()).json()
    cfg["routes"][0]["min_score"] = 0.3
    r = httpx.put(running.admin_url + "/_sidecar/config", json=cfg, headers=_auth())
    assert r.status_code == 200, r.text
    assert r.json()["acknowledged"] is True and r.json()["persisted"] is None
    assert "cannot be written" in r.json()["warning"] and "config_store" in r.json()["warning"]
    assert int(httpx.post(running.url + "/kb/_search", json=QUERY).headers["x-rerank-cut"]) > 0
    assert path.read_text() == text
