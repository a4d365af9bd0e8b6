"""Support code the tests and the benchmarks share, kept out of the installed package: tiny
random-weight models saved like hub checkpoints, and the Qwen3-Reranker model card's reference
scoring code."""
