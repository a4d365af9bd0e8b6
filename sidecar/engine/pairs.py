"""What pair-scoring backends share: dtype and attention choice, chunking, batching by token budget."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from sidecar.engine.protocol import Encoded

log = logging.getLogger(__name__)


def pick_dtype(device: torch.device, requested: str) -> torch.dtype:
    """bf16 on CUDA where supported (else fp16), fp32 on the CPU, unless the config says otherwise."""
    if requested != "auto":
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[requested]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def pick_attention(device: torch.device) -> str:
    """flash-attention-2 on CUDA when it is installed, SDPA otherwise."""
    if device.type == "cuda":
        try:
            import flash_attn  # noqa: F401
        except ImportError:
            return "sdpa"
        return "flash_attention_2"
    return "sdpa"


def pick_packing(requested: str, attention: str) -> bool:
    """Whether batches run as one packed sequence: ``on``, ``off``, or (``auto``) where
    flash-attention's variable-length kernels make it cheaper than padding."""
    if requested == "auto":
        return attention == "flash_attention_2"
    return requested == "on"


def packed_layout(batch: Sequence[Encoded]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch as one row: its token ids, position ids counted from 0 in each input, each
    input's segment number per token, and where each input starts."""
    lengths = torch.tensor([len(ids) for ids, _ in batch])
    ids = torch.tensor([t for seq, _ in batch for t in seq], dtype=torch.long)[None]
    starts = lengths.cumsum(0) - lengths
    segment = torch.repeat_interleave(torch.arange(len(batch)), lengths)
    positions = (torch.arange(int(lengths.sum())) - starts[segment])[None]
    return ids, positions, segment, starts


def is_oom(exc: BaseException) -> bool:
    """CUDA (or any allocator) out of memory."""
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def forward_splitting_on_oom(
    forward: Callable[[Sequence[Encoded]], list[float]], batch: Sequence[Encoded]
) -> list[float]:
    """Run a batch; on out-of-memory run each half instead, down to single inputs."""
    try:
        return forward(batch)
    except (RuntimeError, torch.cuda.OutOfMemoryError) as e:
        if not is_oom(e) or len(batch) == 1:
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        half = len(batch) // 2
        log.warning(
            "out of memory on a batch of %d inputs; retrying as two of %d and %d",
            len(batch),
            half,
            len(batch) - half,
        )
        return forward_splitting_on_oom(forward, batch[:half]) + forward_splitting_on_oom(
            forward, batch[half:]
        )


MAX_PADDING = 0.05


def token_batches(
    lengths: Sequence[int], batch_tokens: int, max_padding: float = MAX_PADDING, packed: bool = False
) -> Iterator[list[int]]:
    """Indices grouped into batches, shortest first, each within ``batch_tokens`` padded tokens
    (``packed``: real tokens, since a packed batch pads nothing).

    A padded batch's cost is its longest input times its size, so the batch size adapts: many
    short inputs or a few long ones. Sorting by length keeps padding small, and a batch
    is also closed before its padding would pass ``max_padding`` of what it computes.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batch: list[int] = []
    real = 0
    for i in order:
        padded = real + lengths[i] if packed else lengths[i] * (len(batch) + 1)
        too_padded = not packed and padded - real - lengths[i] > max_padding * padded
        if batch and (padded > batch_tokens or too_padded):
            yield batch
            batch, real = [], 0
        batch.append(i)
        real += lengths[i]
    if batch:
        yield batch


def split_chunks(tokenizer: Any, text: str, chunk_tokens: int, max_chunks: int) -> list[str]:
    """A long text as consecutive pieces of at most ``chunk_tokens`` tokens (at most ``max_chunks``)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= chunk_tokens:
        return [text]
    pieces = [ids[i : i + chunk_tokens] for i in range(0, len(ids), chunk_tokens)][:max_chunks]
    return [tokenizer.decode(p) for p in pieces]


class PairScorer:
    """``score`` on top of ``encode`` and ``forward``: token-budgeted, length-sorted, best chunk wins."""

    # batches run as one packed sequence (no padding); a packed batch's budget is its real tokens
    packed: bool = False
    batch_tokens: int = 16384
    long_docs: str = "truncate"
    chunk_tokens: int = 512
    max_chunks: int = 8
    tokenizer: Any

    def encode(self, query: str, documents: Sequence[str], instruction: str | None) -> list[list[Encoded]]:
        raise NotImplementedError

    def forward(self, batch: Sequence[Encoded]) -> list[float]:
        raise NotImplementedError

    def documents_as_chunks(self, documents: Sequence[str]) -> list[list[str]]:
        """Each document as itself, or as its chunks in ``chunk`` mode."""
        if self.long_docs != "chunk":
            return [[d] for d in documents]
        return [split_chunks(self.tokenizer, d, self.chunk_tokens, self.max_chunks) for d in documents]

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for this text alone."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def score(self, query: str, documents: Sequence[str], instruction: str | None = None) -> list[float]:
        """Scores of whole documents (a chunked document scores as its best chunk)."""
        encoded = self.encode(query, documents, instruction)
        flat = [(d, e) for d, chunks in enumerate(encoded) for e in chunks]
        scores = [float("-inf")] * len(documents)
        lengths = [len(e[0]) for _, e in flat]
        for batch in token_batches(lengths, self.batch_tokens, packed=self.packed):
            out = forward_splitting_on_oom(self.forward, [flat[i][1] for i in batch])
            for i, s in zip(batch, out, strict=True):
                d = flat[i][0]
                scores[d] = max(scores[d], s)
        return scores

    def warm_up(self) -> None:
        """One tiny forward pass."""
        self.score("warm up", ["warm up"])
