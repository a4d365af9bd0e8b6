"""A retrieval test set in BEIR layout: corpus.jsonl, queries.jsonl, qrels.tsv (graded)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sidecar.docfiles import DocumentsError, jsonl_values

# where eval keeps bi-encoder document embeddings (--cache)
DEFAULT_STORE = Path("~/.cache/rerank-sidecar/embeddings.sqlite")


class DatasetError(ValueError):
    """A dataset that cannot be read: the file, the line and what is wrong."""


@dataclass(frozen=True)
class Dataset:
    """Queries and judgments in memory; the corpus is read as a stream."""

    path: Path
    name: str
    queries: dict[str, str]  # query id -> text, in file order
    qrels: dict[str, dict[str, int]]  # query id -> document id -> grade
    # query id -> its ``metadata`` strings: ``{metadata.KEY}`` in a search template, and
    # ``context``, sent as the X-Search-Context header (the subject a vague query is about)
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def corpus_path(self) -> Path:
        return self.path / "corpus.jsonl"

    def corpus(self) -> Iterator[dict[str, str]]:
        """Documents as ``{"_id", "title", "text"}`` plus any other string or number field
        of the line (a group, a language: what a search template may filter on)."""
        for n, doc in _jsonl(self.corpus_path):
            if "_id" not in doc:
                raise DatasetError(f"{self.corpus_path}:{n}: no _id")
            title, text = str(doc.get("title") or ""), str(doc.get("text") or "")
            extra = {
                k: str(v)
                for k, v in doc.items()
                if k not in ("_id", "title", "text") and isinstance(v, (str, int, float))
            }
            yield {**extra, "_id": str(doc["_id"]), "title": title, "text": text}

    def corpus_size(self) -> int:
        """How many documents the corpus file holds."""
        with self.corpus_path.open("rb") as f:
            return sum(1 for line in f if line.strip())


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    try:
        f = path.open(encoding="utf-8")
    except OSError as e:
        raise DatasetError(f"{path}: {e.strerror}") from None
    with f:
        try:
            for n, doc in jsonl_values(f, path):
                if not isinstance(doc, dict):
                    raise DatasetError(f"{path}:{n}: expected an object")
                yield n, doc
        except DocumentsError as e:
            raise DatasetError(str(e)) from None


def load_dataset(path: str | Path) -> Dataset:
    """Read queries and qrels (only judged queries are kept); check the corpus file exists."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder (expected corpus.jsonl, queries.jsonl, qrels.tsv)")
    for name in ("corpus.jsonl", "queries.jsonl", "qrels.tsv"):
        if not (root / name).is_file():
            raise DatasetError(f"{root}: {name} is missing")
    qrels: dict[str, dict[str, int]] = {}
    qrels_path = root / "qrels.tsv"
    with qrels_path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.rstrip("\n").split("\t")
            if not line.strip() or (n == 1 and parts[0] in ("query-id", "query_id", "qid")):
                continue
            if len(parts) != 3:
                raise DatasetError(f"{qrels_path}:{n}: expected query-id, corpus-id, score separated by tabs")
            try:
                grade = int(float(parts[2]))
            except ValueError:
                raise DatasetError(f"{qrels_path}:{n}: score {parts[2]!r} is not a number") from None
            qrels.setdefault(parts[0], {})[parts[1]] = grade
    queries: dict[str, str] = {}
    metadata: dict[str, dict[str, str]] = {}
    for n, doc in _jsonl(root / "queries.jsonl"):
        if "_id" not in doc or not isinstance(doc.get("text"), str):
            raise DatasetError(f"{root / 'queries.jsonl'}:{n}: expected _id and text")
        qid = str(doc["_id"])
        if qid in qrels:
            queries[qid] = str(doc["text"])
            meta = doc.get("metadata")
            if isinstance(meta, dict):
                metadata[qid] = {str(k): str(v) for k, v in meta.items() if isinstance(v, (str, int, float))}
    if not queries:
        raise DatasetError(f"{root}: no query in queries.jsonl has judgments in qrels.tsv")
    return Dataset(root, root.resolve().name, queries, {q: qrels[q] for q in queries}, metadata)
