"""Offline evaluation on BEIR-layout datasets, and batch reranking from files."""
