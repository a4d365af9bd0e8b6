"""Rerank backends behind one protocol, the inference thread, the score cache."""
