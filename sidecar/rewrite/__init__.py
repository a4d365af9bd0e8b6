"""Query rewriting: rules compiled once per config load, variants for retrieval and reranking."""
