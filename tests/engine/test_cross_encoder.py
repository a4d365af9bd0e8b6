"""Cross-encoders: our scores are the model's own forward pass."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from sidecar.engine.cross_encoder import CrossEncoderBackend
from testkit.synthetic import save_bert
from tests.conftest import CORPUS

DOCS = [f"{d['title']}. {d['text']}" for d in CORPUS]


def _reference(path: Path, query: str, docs: list[str]) -> torch.Tensor:
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    with torch.no_grad():
        out = []
        for d in docs:
            enc = tok(query, d, truncation="only_second", max_length=512, return_tensors="pt")
            out.append(model(**enc).logits[0])
    return torch.stack(out)


def test_single_logit_is_a_sigmoid(tiny_cross_encoder_dir: Path) -> None:
    backend = CrossEncoderBackend(str(tiny_cross_encoder_dir), device="cpu")
    got = backend.score("lora rank", DOCS)
    want = torch.sigmoid(_reference(tiny_cross_encoder_dir, "lora rank", DOCS)[:, 0]).tolist()
    assert got == pytest.approx(want, abs=1e-5)


def test_a_configured_label(tmp_path: Path) -> None:
    path = save_bert(tmp_path / "three", DOCS, num_labels=3)
    backend = CrossEncoderBackend(str(path), device="cpu", label="relevant")
    want = torch.softmax(_reference(path, "gpu memory", DOCS[:4]), dim=-1)[:, 2].tolist()
    assert backend.score("gpu memory", DOCS[:4]) == pytest.approx(want, abs=1e-5)
    with pytest.raises(ValueError, match="labels"):
        CrossEncoderBackend(str(path), device="cpu")


def test_chunking_scores_the_best_chunk(tiny_cross_encoder_dir: Path) -> None:
    plain = CrossEncoderBackend(str(tiny_cross_encoder_dir), device="cpu")
    chunked = CrossEncoderBackend(
        str(tiny_cross_encoder_dir), device="cpu", long_docs="chunk", chunk_tokens=16, max_chunks=3
    )
    doc = " ".join(DOCS[:5])
    pieces = chunked.documents_as_chunks([doc])[0]
    assert len(pieces) == 3
    assert chunked.score("lora", [doc])[0] == pytest.approx(max(plain.score("lora", pieces)), abs=1e-5)
