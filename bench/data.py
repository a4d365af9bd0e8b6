"""The data a benchmark reads: a folder in BEIR layout, or ``beir/NAME`` (downloaded once, as
``rerank-sidecar eval`` does); a missing one is a message saying what to pass, not a traceback."""

from __future__ import annotations

from pathlib import Path

from sidecar.eval.beir import dataset_folder
from sidecar.eval.dataset import DatasetError

FILES = ("corpus.jsonl", "queries.jsonl", "qrels.tsv")


def dataset(spec: str | Path, script: str, needs: tuple[str, ...] = FILES, hint: str | None = None) -> Path:
    """The folder of ``spec`` holding ``needs``; SystemExit with what to run (``hint``, or how
    to get SciFact) where it has not."""
    try:
        folder = dataset_folder(str(spec))
    except DatasetError as e:
        raise SystemExit(f"{script}: {e}") from None
    missing = [n for n in needs if not (folder / n).is_file()]
    if missing:
        hint = hint or (
            "pass --data beir/scifact (downloaded once into ~/.cache/rerank-sidecar;"
            " RERANK_SIDECAR_BEIR_URL names a mirror) or a folder in BEIR layout"
            " (corpus.jsonl, queries.jsonl, qrels.tsv)"
        )
        raise SystemExit(f"{script}: no {', '.join(missing)} in {folder}: {hint}")
    return folder
