"""Shared fixtures: a real osmem-server, a real sidecar on loopback, real models."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvloop
from aiohttp import web
from osmem_server import OsmemServer

from sidecar.config import Config, parse_config
from sidecar.embedded import stop_embedded
from sidecar.engine import calibration
from sidecar.engine.protocol import Backend
from sidecar.server import SidecarServer


def pytest_configure(config: pytest.Config) -> None:
    """ONNX exports of the session's models go to a folder of its own (sidecars it starts inherit
    it): no test reads an export that an earlier run, or the user, left behind."""
    if "RERANK_SIDECAR_CACHE" not in os.environ:
        os.environ["RERANK_SIDECAR_CACHE"] = tempfile.mkdtemp(prefix="rerank-sidecar-test-cache-")


# The slowest tests (whole processes, end-to-end commands, load and fault runs, real exports):
# ``pytest -m "not slow"`` leaves them out for a quick run; the README's ``pytest`` runs all.
SLOW = (
    "tests/adversarial/",
    "tests/demo/",
    "tests/fleet/test_processes.py",
    "tests/eval/test_eval.py",
    "tests/eval/test_tune.py",
    "tests/eval/test_rerank_command.py",
    "tests/experiments/test_simulated_users.py",
    "tests/experiments/test_judgments.py",
    "tests/engine/test_onnx_runtime.py",
    "tests/admin/test_events.py",
    "tests/proxy/test_load.py",
    "tests/test_sizing.py",
    "tests/test_docs.py::test_each_benchmark_command_is_a_script_that_takes_its_options",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(SLOW):
            item.add_marker(pytest.mark.slow)


CORPUS: list[dict[str, str]] = [
    {
        "title": "Choosing a LoRA rank",
        "text": "For most fine-tuning jobs a LoRA rank of 8 or 16 is enough; higher ranks add parameters and memory.",
    },
    {
        "title": "LoRA alpha and rank",
        "text": "Set lora alpha to twice the rank as a starting point and tune the learning rate afterwards.",
    },
    {
        "title": "GPU memory fraction",
        "text": "Limit how much GPU memory a process may take with the per-process memory fraction setting.",
    },
    {
        "title": "Out of memory on the GPU",
        "text": "CUDA out of memory errors go away with a smaller batch size, gradient checkpointing or mixed precision.",
    },
    {
        "title": "Returns within 30 days",
        "text": "Items can be returned within 30 days of delivery for a full refund to the original payment method.",
    },
    {
        "title": "Free shipping threshold",
        "text": "Orders above 50 euros ship for free; smaller orders pay a flat shipping fee.",
    },
    {
        "title": "Java primitive types",
        "text": "Java has eight primitive types: byte, short, int, long, float, double, char and boolean.",
    },
    {
        "title": "Boxing in Java",
        "text": "Autoboxing converts an int into an Integer object when a collection needs a reference type.",
    },
    {
        "title": "Background app refresh on iPhone",
        "text": "Turn off background app refresh in Settings to stop apps updating content when closed.",
    },
    {
        "title": "Error code 13",
        "text": "Error code 13 means permission denied: the service account cannot read the model directory.",
    },
    {
        "title": "Kubernetes pod OOMKilled",
        "text": "A pod is OOMKilled when its container exceeds the memory limit; raise the limit or fix the leak.",
    },
    {
        "title": "Rank of a matrix",
        "text": "The rank of a matrix is the number of linearly independent rows, a basic idea in linear algebra.",
    },
    {
        "title": "Shipping to Norway",
        "text": "Parcels to Norway need a customs declaration and take five to eight working days.",
    },
    {
        "title": "Java string type",
        "text": "String in Java is an immutable reference type; use StringBuilder to build long strings.",
    },
    {
        "title": "LoRA on a small GPU",
        "text": "With rank 4 LoRA adapters a 7B model can be fine-tuned on a 24 GB GPU using 4-bit weights.",
    },
    {
        "title": "Restarting a pod",
        "text": "Delete the pod or run a rollout restart of its deployment to restart it with a fresh container.",
    },
]


def index_corpus(url: str, index: str, docs: Sequence[Mapping[str, Any]]) -> None:
    """Create an index with text fields and bulk the documents in, refreshed."""
    with httpx.Client(base_url=url, timeout=30) as c:
        c.delete(f"/{index}")
        r = c.put(
            f"/{index}",
            json={
                "mappings": {
                    "properties": {
                        "title": {"type": "text"},
                        "text": {"type": "text"},
                        "tag": {"type": "keyword"},
                    }
                }
            },
        )
        assert r.status_code == 200, r.text
        lines = []
        for i, doc in enumerate(docs):
            lines.append(json.dumps({"index": {"_index": index, "_id": str(i)}}))
            lines.append(json.dumps(doc))
        r = c.post(
            "/_bulk?refresh=true",
            content="\n".join(lines) + "\n",
            headers={"content-type": "application/x-ndjson"},
        )
        assert r.status_code == 200 and not r.json()["errors"], r.text


@pytest.fixture(scope="session")
def osmem() -> Iterator[OsmemServer]:
    """One osmem-server for the session, with the test corpus in kb, docs-1 and plain (unrouted)."""
    server = OsmemServer.start(japanese=False)
    for index in ("kb", "docs-1", "plain", "slow", "broken"):
        index_corpus(server.url, index, CORPUS)
    yield server
    stop_embedded(server)


class SlowBackend:
    """Sleeps past any sane budget: drives the timeout fallback."""

    name = "slow"

    def __init__(self, delay_s: float = 1.0) -> None:
        self.delay_s = delay_s

    def score(self, query: str, documents: Sequence[str], instruction: str | None = None) -> list[float]:
        time.sleep(self.delay_s)
        return [0.0] * len(documents)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def warm_up(self) -> None:
        return None


class BrokenBackend(SlowBackend):
    """Raises on every call: drives the model-error fallback."""

    name = "broken"

    def score(self, query: str, documents: Sequence[str], instruction: str | None = None) -> list[float]:
        raise RuntimeError("CUDA error: device-side assert triggered")


class RunningSidecar:
    """A SidecarServer serving on loopback from a background thread with its own loop."""

    def __init__(
        self,
        config: Config,
        backends: Mapping[str, Backend] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        **server: Any,
    ) -> None:
        self.server = SidecarServer(config, backends=backends, **server)
        # uvloop as the CLI runs it; eval, tune and bench run the sidecar on asyncio's own loop
        self.loop = loop or uvloop.new_event_loop()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.ready.is_set():
            if self.error or time.monotonic() > deadline:
                raise RuntimeError(f"sidecar did not start: {self.error!r}")
            time.sleep(0.02)
        self.url = self.server.proxy_url
        self.admin_url = self.server.admin_url

    def _run(self) -> None:
        try:
            self.loop.run_until_complete(self.server.serve())
        except BaseException as e:
            self.error = e

    def backend(self, name: str) -> Backend:
        """A loaded backend, for computing expected scores."""
        assert self.server.runtime is not None
        return self.server.runtime.backends[name]

    def scores(self, name: str, query: str, documents: list[str]) -> list[float]:
        """The model's scores as the sidecar reports them: the backend's, calibrated into [0, 1]."""
        assert self.server.runtime is not None
        raw = self.backend(name).score(query, documents)
        return calibration.apply(self.server.runtime.calibrations[name], raw)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.stop)
        self.thread.join(30)


class ThreadedApp:
    """An aiohttp app on loopback in a thread and loop of its own, so that a sidecar running in
    another thread can call it; ``stop`` ends it (a new one may take the same port)."""

    def __init__(
        self, app: web.Application, port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app)
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.runner.setup())
            site = web.TCPSite(self.runner, "127.0.0.1", port, ssl_context=ssl_context, reuse_address=True)
            self.loop.run_until_complete(site.start())
            self.port: int = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def sidecar_config(upstream: str, **overrides: Any) -> Config:
    """The test config: kb and docs-* on MiniLM, slow and broken on their fault backends."""
    data: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "upstream": {"url": upstream},
        "admin": {"listen": "127.0.0.1:0"},
        "models": {
            "minilm": {"backend": "bi-encoder", "model": "all-MiniLM-L6-v2", "device": "cpu"},
            "slow": {"backend": "bi-encoder", "model": "unused"},
            "broken": {"backend": "bi-encoder", "model": "unused"},
        },
        "routes": [
            {
                "indices": ["kb", "docs-*"],
                "model": "minilm",
                "window": 12,
                "fields": ["title", "text"],
                "template": "{title}\n{text}",
                "fusion": "replace",  # the model's own order: what most tests check
            },
            {
                "indices": ["slow"],
                "model": "slow",
                "window": 10,
                "fields": ["title", "text"],
                "timeout_ms": 200,
            },
            {"indices": ["broken"], "model": "broken", "window": 10, "fields": ["title", "text"]},
        ],
    }
    data.update(overrides)
    return parse_config(data)


@pytest.fixture(scope="session")
def sidecar(osmem: OsmemServer) -> Iterator[RunningSidecar]:
    """The sidecar in front of osmem, with the real MiniLM and the two fault backends."""
    running = RunningSidecar(
        sidecar_config(osmem.url), backends={"slow": SlowBackend(), "broken": BrokenBackend()}
    )
    yield running
    running.close()


@pytest.fixture
def direct(osmem: OsmemServer) -> Iterator[httpx.Client]:
    """A raw HTTP client straight to osmem."""
    with httpx.Client(base_url=osmem.url, timeout=30) as c:
        yield c


@pytest.fixture
def proxied(sidecar: RunningSidecar) -> Iterator[httpx.Client]:
    """A raw HTTP client through the sidecar."""
    with httpx.Client(base_url=sidecar.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT encoder with a real WordPiece tokenizer, saved the way the hub lays it out."""
    from testkit.synthetic import save_bert

    return save_bert(tmp_path_factory.mktemp("tiny-bert"), [f"{d['title']} {d['text']}" for d in CORPUS])


Factory = Callable[..., RunningSidecar]


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Qwen3 reranker with a trained byte-level BPE tokenizer."""
    from testkit.synthetic import save_qwen3_reranker

    texts = [f"{d['title']} {d['text']}" for d in CORPUS]
    return save_qwen3_reranker(tmp_path_factory.mktemp("tiny-qwen3"), texts)


@pytest.fixture(scope="session")
def tiny_cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random BERT cross-encoder with one logit."""
    from testkit.synthetic import save_bert

    texts = [f"{d['title']} {d['text']}" for d in CORPUS]
    return save_bert(tmp_path_factory.mktemp("tiny-ce"), texts, num_labels=1)
