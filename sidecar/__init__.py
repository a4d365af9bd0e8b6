"""rerank-sidecar: a transparent reranking proxy in front of OpenSearch and Elasticsearch."""

__version__ = "0.1.0"
