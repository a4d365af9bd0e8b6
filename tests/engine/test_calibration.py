"""Every model's score on one [0, 1] scale: which models are calibrated, and how."""

from __future__ import annotations

import pytest

from sidecar.config import model_entry
from sidecar.engine.calibration import GENERIC_COSINE, KNOWN, Calibration, apply, for_model
from sidecar.engine.registry import model_calibration


def test_probabilities_pass_and_cosines_are_mapped() -> None:
    minilm = KNOWN["all-MiniLM-L6-v2"]
    for spec in (
        model_entry(dict(backend="qwen3", model="Qwen/Qwen3-Reranker-0.6B")),
        model_entry(dict(backend="cross-encoder", model="BAAI/bge-reranker-v2-m3")),
        model_entry(dict(backend="remote", api="tei", url="http://127.0.0.1:1")),
    ):
        assert model_calibration(spec) is None
    for name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "/models/all-MiniLM-L6-v2/"):
        assert model_calibration(model_entry(dict(backend="bi-encoder", model=name))) == minilm
    assert for_model("bi-encoder", "intfloat/e5-small-v2", None) is GENERIC_COSINE
    own = model_entry(dict(backend="cross-encoder", model="m", calibration={"center": 2.0, "scale": 1.5}))
    assert model_calibration(own) == Calibration(2.0, 1.5)


def test_the_mapping_is_monotone_bounded_and_half_at_the_center() -> None:
    c = Calibration(center=0.475, scale=0.1)
    values = apply(c, [-1.0, 0.0, 0.3, 0.475, 0.6, 1.0, 50.0, -50.0])
    assert values[3] == pytest.approx(0.5)
    assert values[:6] == sorted(values[:6]) and all(0.0 <= v <= 1.0 for v in values)
    assert apply(None, [3.0, -1.0]) == [3.0, -1.0]
    with pytest.raises(ValueError):
        model_entry(dict(backend="bi-encoder", model="m", calibration={"center": 0.4, "scale": 0}))
