"""Build backends from the models section of the config."""

from __future__ import annotations

from sidecar.config import ModelConfig
from sidecar.engine.bi_encoder import BiEncoderBackend
from sidecar.engine.protocol import Backend


def build_backend(name: str, spec: ModelConfig) -> Backend:
    """Instantiate the backend a model entry names."""
    if spec.backend == "bi-encoder":
        return BiEncoderBackend(
            spec.model,
            name=name,
            device=spec.device,
            max_length=spec.max_length,
            batch_size=spec.batch_size,
            cache_size=spec.cache_size,
        )
    raise ValueError(f"models.{name}.backend: unsupported backend {spec.backend!r}")
