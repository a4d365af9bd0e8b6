"""``rerank-sidecar init`` against osmem-server with several mappings: the routes it proposes,
a config check-config accepts, and a sidecar that serves it."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from osmem_server import OsmemServer

from sidecar.config import load_config, parse_listen
from sidecar.init import free_port

MAPPINGS = {
    "articles": {
        "properties": {"body": {"type": "text"}, "title": {"type": "text"}, "views": {"type": "long"}}
    },
    "articles-archive": {"properties": {"body": {"type": "text"}, "title": {"type": "text"}}},
    "products": {
        "properties": {
            "name": {"type": "keyword"},
            "details": {"properties": {"summary": {"type": "text"}, "color": {"type": "keyword"}}},
            "reviews": {"type": "nested", "properties": {"text": {"type": "text"}}},
        }
    },
    "codes": {"properties": {"sku": {"type": "keyword"}, "price": {"type": "float"}}},
    "numbers": {"properties": {"price": {"type": "float"}}},
    ".internal": {"properties": {"secret": {"type": "text"}}},
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[OsmemServer]:
    server = OsmemServer.start(japanese=False)
    with httpx.Client(base_url=server.url) as c:
        for index, mapping in MAPPINGS.items():
            c.put(f"/{index}", json={"mappings": mapping}).raise_for_status()
    yield server
    server.close()


def _init(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "init", *args], capture_output=True, text=True, timeout=120
    )


def test_init_proposes_routes_from_the_mappings(cluster: OsmemServer, tmp_path: Path) -> None:
    out = tmp_path / "sidecar.yaml"
    r = _init("--upstream", cluster.url, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert f"serve it: rerank-sidecar serve --config {out}" in r.stdout
    config = load_config(out)  # what check-config reads
    routes = {tuple(route.indices): route for route in config.routes}
    assert set(routes) == {("articles", "articles-archive"), ("products",), ("codes",)}
    assert routes[("articles", "articles-archive")].fields == ["title", "body"]  # the title first
    assert routes[("articles", "articles-archive")].template == "{title}\n{body}"
    assert routes[("products",)].fields == ["details.summary"]  # text over keywords, no nested children
    assert routes[("codes",)].fields == ["sku"]  # no text field at all: its keywords
    model = config.models["reranker"]
    assert (model.backend, model.model) == ("bi-encoder", "all-MiniLM-L6-v2")  # no CUDA here
    # on a CPU a first-seen window takes seconds: a budget that fits it, the embeddings kept
    assert all(route.timeout_ms == 8000 for route in config.routes)
    assert model.embedding_store == str(out.resolve().with_name(out.stem + "-embeddings.sqlite"))  # type: ignore[union-attr]
    text = out.read_text()
    assert "# Written by rerank-sidecar init" in text
    assert r'template: "{title}\n{body}"' in text  # one line, as a person writes it
    cluster_port = int(cluster.url.rsplit(":", 1)[1])
    ports = {parse_listen(config.listen)[1], parse_listen(config.admin.listen)[1]}
    assert cluster_port not in ports and len(ports) == 2  # never the cluster's port, nor each other's
    check = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "check-config", str(out)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    assert _init("--upstream", cluster.url, "--out", str(out)).returncode == 2  # no overwrite without --force


def test_init_with_a_pattern_and_a_cluster_it_cannot_read(cluster: OsmemServer, tmp_path: Path) -> None:
    out = tmp_path / "articles.yaml"
    assert _init("--upstream", cluster.url, "--index", "articles*", "--out", str(out)).returncode == 0
    assert [r["indices"] for r in yaml.safe_load(out.read_text())["routes"]] == [
        ["articles", "articles-archive"]
    ]
    bad = _init("--upstream", "http://127.0.0.1:9", "--out", str(tmp_path / "x.yaml"))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "cannot read" in bad.stderr


def test_the_written_config_serves(cluster: OsmemServer, tmp_path: Path) -> None:
    from tests.conftest import RunningSidecar

    out = tmp_path / "serve.yaml"
    assert _init("--upstream", cluster.url, "--index", "articles", "--out", str(out)).returncode == 0
    config = load_config(out)
    config = config.model_copy(
        update={"listen": "127.0.0.1:0", "admin": config.admin.model_copy(update={"listen": "127.0.0.1:0"})}
    )
    with httpx.Client(base_url=cluster.url) as c:
        c.put(
            "/articles/_doc/1?refresh=true",
            json={"title": "GPU memory", "body": "why the GPU runs out of memory"},
        )
    running = RunningSidecar(config)
    try:
        r = httpx.post(f"{running.url}/articles/_search", json={"query": {"match": {"body": "gpu memory"}}})
        assert r.status_code == 200 and r.headers["x-rerank"] == "applied"
    finally:
        running.close()


def test_init_picks_a_port_that_is_free_and_not_the_clusters() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        chosen = free_port(port, {port + 1})  # its first choice is taken, the next one is the cluster's
        assert chosen not in (port, port + 1) and chosen > port
        with socket.socket() as again:
            again.bind(("127.0.0.1", chosen))  # free indeed


def test_a_port_in_use_is_reported_with_the_key_and_flag_that_change_it() -> None:
    from sidecar.config import ConfigError
    from sidecar.server import bind

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(ConfigError) as proxy:
            bind(listen)
        assert str(proxy.value) == (
            f"listen: cannot listen on {listen}: Address already in use (another process has that port:"
            " change listen in the config, or serve --listen HOST:PORT)"
        )
        with pytest.raises(ConfigError, match=r"change admin\.listen in the config, or serve --admin-listen"):
            bind(listen, "admin.listen", "--admin-listen")
