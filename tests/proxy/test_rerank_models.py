"""Each local backend reranks end to end through the proxy, loaded from a saved model by the real code."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opensearchpy import OpenSearch
from osmem_server import OsmemServer

from tests.conftest import RunningSidecar, sidecar_config

QUERY = {"query": {"match": {"text": "which LoRA rank should I use"}}, "size": 5}


@pytest.fixture(scope="module")
def model_sidecar(
    osmem: OsmemServer, tiny_qwen3_dir: Path, tiny_cross_encoder_dir: Path
) -> Iterator[RunningSidecar]:
    models = {
        "qwen": {"backend": "qwen3", "model": str(tiny_qwen3_dir), "device": "cpu", "max_length": 512},
        "ce": {"backend": "cross-encoder", "model": str(tiny_cross_encoder_dir), "device": "cpu"},
    }
    routes = [
        {
            "indices": ["kb"],
            "model": "qwen",
            "window": 12,
            "fields": ["title", "text"],
            "instruction": "Find passages about machine learning",
            "fusion": "replace",  # the backend's own order: what these tests check
        },
        {
            "indices": ["docs-*"],
            "model": "ce",
            "window": 12,
            "fields": ["title", "text"],
            "fusion": "replace",
        },
    ]
    running = RunningSidecar(sidecar_config(osmem.url, models=models, routes=routes))
    yield running
    running.close()


def _window_texts(direct_url: str, index: str) -> tuple[list[str], list[str]]:
    hits = httpx.post(f"{direct_url}/{index}/_search", json={**QUERY, "size": 12}).json()["hits"]["hits"]
    return [h["_id"] for h in hits], [f"{h['_source']['title']}\n{h['_source']['text']}" for h in hits]


@pytest.mark.parametrize(
    ("index", "model", "instruction"),
    [("kb", "qwen", "Find passages about machine learning"), ("docs-1", "ce", None)],
)
def test_backend_reranks_end_to_end(
    model_sidecar: RunningSidecar, osmem: OsmemServer, index: str, model: str, instruction: str | None
) -> None:
    client = OpenSearch(hosts=[model_sidecar.url])
    res = client.search(index=index, body=QUERY)
    ids, texts = _window_texts(osmem.url, index)
    scores = model_sidecar.backend(model).score("which LoRA rank should I use", texts, instruction)
    expected = [ids[i] for i in sorted(range(len(ids)), key=lambda i: (-scores[i], i))][:5]
    assert [h["_id"] for h in res["hits"]["hits"]] == expected
    assert [h["_score"] for h in res["hits"]["hits"]] == pytest.approx(
        sorted(scores, reverse=True)[:5], abs=1e-6
    )


def test_the_instruction_header_overrides_the_route(model_sidecar: RunningSidecar) -> None:
    a = httpx.post(f"{model_sidecar.url}/kb/_search", json=QUERY)
    b = httpx.post(
        f"{model_sidecar.url}/kb/_search",
        json=QUERY,
        headers={"X-Rerank-Instruction": "Retrieve shipping rules"},
    )
    assert a.headers["x-rerank"] == b.headers["x-rerank"] == "applied"
    sa = {h["_id"]: h["_score"] for h in a.json()["hits"]["hits"]}
    sb = {h["_id"]: h["_score"] for h in b.json()["hits"]["hits"]}
    common = set(sa) & set(sb)
    assert common and any(abs(sa[i] - sb[i]) > 1e-7 for i in common)


def test_health_shows_the_models(model_sidecar: RunningSidecar) -> None:
    health = httpx.get(f"{model_sidecar.admin_url}/_sidecar/health").json()
    assert health["models"]["qwen"]["backend"] == "Qwen3Reranker"
    assert health["models"]["ce"]["backend"] == "CrossEncoderBackend"
