"""ONNX Runtime for the encoder backends: real exports of tiny models saved like hub checkpoints,
checked against torch, cached by their weights, and torch where the export cannot be used."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from sidecar.config import ConfigError, parse_config
from sidecar.engine import onnx_runtime
from sidecar.engine.batcher import Batcher
from sidecar.engine.bi_encoder import BiEncoderBackend, _Pooled
from sidecar.engine.cross_encoder import CrossEncoderBackend
from sidecar.engine.models import pick_device
from testkit.synthetic import save_bert
from tests.conftest import CORPUS

QUERIES = ["lora rank", "which gpu memory setting", "free shipping to norway and sweden"]
DOCS = [f"{d['title']}\n{d['text']}" for d in CORPUS[:6]] + [
    "",
    "gpu " * 80,
]  # an empty text, and one of several chunks


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An export cache of the test's own."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("RERANK_SIDECAR_CACHE", str(folder))
    return folder


def exports(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "onnx").iterdir() if not p.name.startswith("."))


def test_a_bi_encoder_on_onnx_scores_as_on_torch_and_is_exported_once(
    tiny_bert_dir: Path, cache: Path
) -> None:
    settings = {"device": "cpu", "max_length": 64, "chunk": True, "chunk_tokens": 16}
    onnx = BiEncoderBackend(str(tiny_bert_dir), runtime="onnx", **settings)  # type: ignore[arg-type]
    torch_ = BiEncoderBackend(str(tiny_bert_dir), runtime="torch", **settings)  # type: ignore[arg-type]
    assert (onnx.runtime, onnx.runtime_problem) == ("onnx", None)
    assert torch_.runtime == "torch"
    got, want = onnx.score_many(QUERIES, DOCS), torch_.score_many(QUERIES, DOCS)
    for row, ref in zip(got, want, strict=True):
        assert row == pytest.approx(ref, abs=1e-5)
    # a batch of every length at once (padding inside the exported graph) against each alone
    pieces = [p for d in DOCS for p in onnx._pieces(d, chunk=True)]
    together = onnx._encode(pieces)
    for i, p in enumerate(pieces):
        assert together[i] == pytest.approx(torch_._encode([p])[0], abs=1e-5)
    [made] = exports(cache)
    stamp = (made / "model.onnx").stat().st_mtime_ns
    again = BiEncoderBackend(str(tiny_bert_dir), runtime="auto", **settings)  # type: ignore[arg-type]
    assert again.runtime == "onnx, torch for bulk passes"  # auto, on a CPU
    assert (
        exports(cache) == [made] and (made / "model.onnx").stat().st_mtime_ns == stamp
    )  # not exported again


def test_other_weights_get_an_export_of_their_own(tiny_bert_dir: Path, tmp_path: Path, cache: Path) -> None:
    other = save_bert(tmp_path / "other", [f"{d['title']} {d['text']}" for d in CORPUS], seed=1)
    a = BiEncoderBackend(str(tiny_bert_dir), device="cpu", runtime="onnx")
    b = BiEncoderBackend(str(other), device="cpu", runtime="onnx")
    assert a.runtime == b.runtime == "onnx" and len(exports(cache)) == 2
    assert a.score("lora rank", DOCS[:3]) != pytest.approx(b.score("lora rank", DOCS[:3]), abs=1e-3)


@pytest.mark.parametrize("labels", [None, 3])
def test_a_cross_encoder_on_onnx_scores_as_on_torch(tmp_path: Path, cache: Path, labels: int | None) -> None:
    path = save_bert(tmp_path / "ce", [f"{d['title']} {d['text']}" for d in CORPUS], num_labels=labels or 1)
    label = "relevant" if labels else None
    onnx = CrossEncoderBackend(str(path), device="cpu", runtime="onnx", label=label)
    torch_ = CrossEncoderBackend(str(path), device="cpu", runtime="torch", label=label)
    assert (onnx.runtime, onnx.runtime_problem) == ("onnx", None) and torch_.runtime == "torch"
    for q in QUERIES:
        batch = [e for chunks in onnx.encode(q, DOCS, None) for e in chunks]
        assert batch[0][1] is not None  # BERT's token types go through the export too
        assert onnx.forward(batch) == pytest.approx(torch_.forward(batch), abs=1e-5)


def test_an_export_that_cannot_be_made_leaves_the_model_on_torch(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("RERANK_SIDECAR_CACHE", str(blocked))  # the exports' folder cannot be made
    backend = BiEncoderBackend(str(tiny_bert_dir), device="cpu", runtime="onnx")
    assert backend.runtime == "torch"
    assert backend.runtime_problem is not None and backend.runtime_problem.startswith("ONNX Runtime not used")
    reference = BiEncoderBackend(str(tiny_bert_dir), device="cpu", runtime="torch")
    assert backend.score("lora rank", DOCS) == pytest.approx(reference.score("lora rank", DOCS), abs=1e-6)


async def test_the_health_of_a_model_says_its_runtime_and_why_not_onnx(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("RERANK_SIDECAR_CACHE", str(blocked))
    b = Batcher("m", lambda: BiEncoderBackend(str(tiny_bert_dir), device="cpu", runtime="onnx"))
    await b.start()
    try:
        info = b.info()
        assert info["runtime"] == "torch" and "ONNX Runtime not used" in info["runtime_problem"]
    finally:
        await b.aclose()
    monkeypatch.setenv("RERANK_SIDECAR_CACHE", str(tmp_path / "cache"))
    b = Batcher("m", lambda: BiEncoderBackend(str(tiny_bert_dir), device="cpu"))
    await b.start()
    try:
        assert b.info()["runtime"] == "onnx, torch for bulk passes" and "runtime_problem" not in b.info()
    finally:
        await b.aclose()


def test_an_export_that_differs_from_torch_is_not_used(
    tiny_bert_dir: Path, tmp_path: Path, cache: Path
) -> None:
    """A cached export that does not compute what the weights do (another model's, a file
    damaged on disk) is caught by the check at load: the model runs on torch."""
    BiEncoderBackend(str(tiny_bert_dir), device="cpu", runtime="onnx")
    [first] = exports(cache)
    other = save_bert(tmp_path / "other", [f"{d['title']} {d['text']}" for d in CORPUS], seed=7)
    from transformers import AutoModel

    key = onnx_runtime.weights_key(_Pooled(AutoModel.from_pretrained(str(other)).eval()), "bi-encoder")
    shutil.copytree(first, cache / "onnx" / key)  # where the other weights' export would be
    backend = BiEncoderBackend(str(other), device="cpu", runtime="onnx")
    assert backend.runtime == "torch"
    assert backend.runtime_problem is not None and "differs from torch" in backend.runtime_problem


def test_the_weights_key_follows_the_weights_and_the_settings(tiny_bert_dir: Path) -> None:
    from transformers import AutoModel

    model = _Pooled(AutoModel.from_pretrained(str(tiny_bert_dir)).eval())
    key = onnx_runtime.weights_key(model, "bi-encoder")
    assert key == onnx_runtime.weights_key(model, "bi-encoder")
    assert key != onnx_runtime.weights_key(model, "cross-encoder")
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    assert key != onnx_runtime.weights_key(model, "bi-encoder")


def test_runtime_choice() -> None:
    assert onnx_runtime.choose("auto", pick_device("cpu")) == "onnx"
    assert onnx_runtime.choose("auto", torch.device("cuda")) == "torch"
    assert onnx_runtime.choose("torch", pick_device("cpu")) == "torch"
    assert onnx_runtime.default_threads() == max(1, onnx_runtime.usable_cpus() - 1)


def _model(**entry: object) -> dict[str, object]:
    return {
        "upstream": {"url": "http://127.0.0.1:9200"},
        "models": {"m": entry},
        "routes": [{"indices": ["kb"], "model": "m", "fields": ["text"]}],
    }


def test_the_config_says_where_runtime_and_threads_apply() -> None:
    bi = parse_config(_model(backend="bi-encoder", model="x", runtime="onnx", threads=3)).models["m"]
    assert (bi.runtime, bi.threads, bi.max_wait_ms) == ("onnx", 3, 0.0)  # type: ignore[union-attr]
    ce = parse_config(_model(backend="cross-encoder", model="x")).models["m"]
    assert (ce.runtime, ce.threads, ce.max_wait_ms) == ("auto", None, 2.0)  # type: ignore[union-attr]
    for entry, message in [
        ({"backend": "qwen3", "model": "x", "runtime": "onnx"}, "qwen3 runs on torch"),
        ({"backend": "bi-encoder", "model": "x", "runtime": "onnx", "device": "cuda"}, "runs on the CPU"),
        ({"backend": "cross-encoder", "model": "x", "runtime": "onnx", "packing": "on"}, "packing: on"),
        ({"backend": "bi-encoder", "model": "x", "runtime": "tensorrt"}, "runtime"),
        ({"backend": "bi-encoder", "model": "x", "threads": 0}, "threads"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_config(_model(**entry))


class _Seen:
    """A session that notes which of the model's sessions each pass ran on."""

    def __init__(self, real: Any, name: str, log: list[str]) -> None:
        self.real, self.name, self.log = real, name, log

    def run(self, *args: Any) -> Any:
        self.log.append(self.name)
        return self.real.run(*args)


def _watched(backend: BiEncoderBackend) -> list[str]:
    log: list[str] = []
    assert backend.placement.model is not None
    for name in ("session", "wide"):
        setattr(backend.placement.model, name, _Seen(getattr(backend.placement.model, name), name, log))
    return log


@pytest.mark.skipif(onnx_runtime.usable_cpus() < 2, reason="one CPU: no session on more threads")
def test_which_passes_run_on_which_threads_and_runtime(tiny_bert_dir: Path, cache: Path) -> None:
    """Under load, the queries of several searches run on ``threads`` (the event loop keeps a
    core); a search alone runs on every CPU; bulk work (documents seen for the first time) on
    every CPU with runtime onnx, on torch's faster kernels with auto. The scores are the same."""
    docs = [f"{d['title']}\n{d['text']} {d['text']} {d['text']}" for d in CORPUS]  # over 1,024 tokens in all
    reference = BiEncoderBackend(str(tiny_bert_dir), device="cpu", runtime="torch", chunk=True)
    for runtime, bulk_on in [("onnx", ["wide"]), ("auto", [])]:
        backend = BiEncoderBackend(str(tiny_bert_dir), device="cpu", runtime=runtime, threads=1, chunk=True)
        assert backend.placement.model is not None and backend.placement.model.threads == 1
        assert backend.placement.model.wide_threads == onnx_runtime.usable_cpus()
        ran = _watched(backend)
        bulk = backend.score_group([(["q"], docs, None), (["r"], docs, None)])  # documents first seen
        assert sorted(set(ran)) == bulk_on, runtime
        ran.clear()
        company = backend.score_group([(["lora rank"], docs, None), (["gpu memory"], docs, None)])
        assert ran == ["session"], runtime  # two searches' queries: the threads that leave a core
        ran.clear()
        alone = backend.score_group([(["which lora rank"], docs, None)])
        assert ran == ["wide"], runtime  # a search alone: every CPU
        for got, queries in [
            (bulk, ["q", "r"]),
            (company, ["lora rank", "gpu memory"]),
            (alone, ["which lora rank"]),
        ]:
            for row, q in zip(got, queries, strict=True):
                assert row[0] == pytest.approx(reference.score(q, docs), abs=1e-5)
    cpus = onnx_runtime.usable_cpus()
    many = BiEncoderBackend(str(tiny_bert_dir), device="cpu", runtime="onnx", threads=cpus)
    assert (
        many.placement.model is not None and many.placement.model.wide is None
    )  # already on every CPU: one session
