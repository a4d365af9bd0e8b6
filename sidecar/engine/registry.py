"""Build the models of the config: local backends, each behind its batcher, or remote clients."""

from __future__ import annotations

from collections.abc import Callable

from sidecar.config import LocalModel, ModelConfig, RemoteModel
from sidecar.engine.batcher import Batcher
from sidecar.engine.calibration import Calibration, for_model
from sidecar.engine.protocol import Backend, Scorer
from sidecar.engine.score_cache import CachedScorer, SharedScores, model_fingerprint


def build_backend(name: str, spec: LocalModel) -> Backend:
    """Instantiate the backend a model entry names (loads weights: call it on the model's thread)."""
    if spec.backend == "bi-encoder":
        from sidecar.engine.bi_encoder import BiEncoderBackend

        return BiEncoderBackend(
            spec.model,
            name=name,
            device=spec.device,
            max_length=spec.max_length or 256,
            batch_size=spec.batch_size,
            cache_size=spec.cache_size,
            store=spec.embedding_store,
            chunk=spec.long_docs == "chunk",
            chunk_tokens=spec.chunk_tokens or 128,
            max_chunks=spec.max_chunks or 16,
            runtime=spec.runtime,
            threads=spec.threads,
        )
    common = {
        "name": name,
        "device": spec.device,
        "dtype": spec.dtype,
        "max_length": spec.max_length,
        "batch_tokens": spec.batch_tokens,
        "long_docs": spec.long_docs,
        "chunk_tokens": spec.chunk_tokens,
        "max_chunks": spec.max_chunks,
        "packing": spec.packing,
    }
    if spec.backend == "qwen3":
        from sidecar.engine.qwen3 import Qwen3Reranker

        return Qwen3Reranker(spec.model, **common)  # type: ignore[arg-type]
    if spec.backend == "cross-encoder":
        from sidecar.engine.cross_encoder import CrossEncoderBackend

        return CrossEncoderBackend(
            spec.model,
            label=spec.label,
            runtime=spec.runtime,
            threads=spec.threads,
            **common,  # type: ignore[arg-type]
        )
    raise ValueError(f"models.{name}.backend: unsupported backend {spec.backend!r}")


def make_scorer(
    name: str,
    spec: ModelConfig,
    load: Callable[[], Backend] | None = None,
    shared: SharedScores | None = None,
) -> Scorer:
    """A model entry as the service uses it: a remote API client, or a local backend behind its
    batcher, either behind the score cache; ``load`` replaces building the local backend from the
    config (tests)."""
    scorer: Scorer
    if isinstance(spec, RemoteModel) and load is None:
        from sidecar.engine.remote import RemoteScorer

        scorer = RemoteScorer(name, spec)
    elif isinstance(spec, LocalModel):
        local = spec
        scorer = Batcher(
            name,
            load or (lambda: build_backend(name, local)),
            batch_tokens=spec.batch_tokens,
            max_wait_ms=spec.max_wait_ms or 0.0,
            max_queue=spec.max_queue,
        )
    else:
        assert load is not None
        scorer = Batcher(name, load, max_queue=spec.max_queue)
    if shared is not None:
        return CachedScorer(scorer, spec.cache_size, shared, model_fingerprint(spec))
    return CachedScorer(scorer, spec.cache_size) if spec.cache_size else scorer


def model_calibration(spec: ModelConfig) -> Calibration | None:
    """The calibration of a model entry's raw scores: its own, the shipped fit of its model, or
    none for models whose scores are probabilities already."""
    own = spec.calibration
    return for_model(spec.backend, spec.model, Calibration(own.center, own.scale) if own else None)
