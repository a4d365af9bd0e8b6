"""The rerank APIs of the serving engines, one table entry each: path, request body, answer.

A new API is one entry here (the config's ``api`` key and the remote client read this table).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


def _items(*keys: str) -> Callable[[Any], Any]:
    """The list of results under the first of ``keys`` the answer has."""

    def get(payload: Any) -> Any:
        if not isinstance(payload, dict):
            return None
        return next((payload[k] for k in keys if k in payload), None)

    return get


@dataclass(frozen=True)
class RemoteApi:
    """How one engine's rerank API is called and read."""

    name: str
    path: str
    body: Callable[[str, list[str]], dict[str, Any]]  # query, documents -> the JSON sent
    items: Callable[[Any], Any]  # the answer -> its list of {index, score} results
    score_key: str
    docs_per_request: int = 100  # default max_docs_per_request
    sends_model: bool = True  # the body names the model (TEI serves one and takes no name)
    needs_model_and_key: bool = False  # a hosted API: model and api_key_env are required

    def request_body(self, model: str | None, query: str, documents: Sequence[str]) -> dict[str, Any]:
        """The JSON that scores ``documents`` against ``query``."""
        body = self.body(query, list(documents))
        if model is not None and self.sends_model:
            body["model"] = model
        return body


API_TABLE: tuple[RemoteApi, ...] = (
    # vLLM's rerank endpoint (Jina/Cohere shape); every document back, so none is left unscored
    RemoteApi(
        "vllm-rerank",
        "/v1/rerank",
        lambda q, d: {"query": q, "documents": d, "top_n": len(d)},
        _items("results", "data"),
        "relevance_score",
    ),
    # vLLM's score endpoint: text_1 against each text_2
    RemoteApi("vllm-score", "/score", lambda q, d: {"text_1": q, "text_2": d}, _items("data"), "score"),
    # Text Embeddings Inference: a bare list back; it refuses more than --max-client-batch-size (32)
    RemoteApi(
        "tei",
        "/rerank",
        lambda q, d: {"query": q, "texts": d, "truncate": True, "raw_scores": False},
        lambda payload: payload,
        "score",
        docs_per_request=32,
        sends_model=False,
    ),
    # Infinity: Cohere-shaped results (data in versions before)
    RemoteApi(
        "infinity",
        "/rerank",
        lambda q, d: {"query": q, "documents": d, "return_documents": False},
        _items("results", "data"),
        "relevance_score",
    ),
    RemoteApi(
        "cohere",
        "/v2/rerank",
        lambda q, d: {"query": q, "documents": d, "top_n": len(d)},
        _items("results", "data"),
        "relevance_score",
        needs_model_and_key=True,
    ),
)
APIS: dict[str, RemoteApi] = {api.name: api for api in API_TABLE}
