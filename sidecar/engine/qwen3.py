"""Qwen3-Reranker scored exactly as its model card does, computing only what the score needs."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sidecar.engine.models import pick_device, resolve_model
from sidecar.engine.pairs import PairScorer, packed_layout, pick_attention, pick_dtype, pick_packing
from sidecar.engine.protocol import Encoded

log = logging.getLogger(__name__)

# The model card's prompt (tests/engine/test_qwen3.py holds the card's code to the same scores)
PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
    'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


def format_instruction(instruction: str | None, query: str, doc: str) -> str:
    """The user turn of the prompt, as the card writes it."""
    if instruction is None:
        instruction = DEFAULT_INSTRUCTION
    return f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}"


class Qwen3Reranker(PairScorer):
    """P(yes) from the card's prompt; the last position's hidden state times the two head rows.

    The card runs the full causal LM and takes logits over the whole 151k vocabulary at
    every position, then keeps two numbers. Here the decoder runs once, the final hidden
    state is read at the last position only, and it is multiplied by the LM head rows of
    ``no`` and ``yes``: the same numbers for a fraction of the work. Inputs are left-padded
    as on the card, with position ids counted from each input's first real token, so a
    score does not depend on what else shares its batch.
    """

    def __init__(
        self,
        model: str,
        *,
        name: str = "qwen3",
        device: str = "auto",
        dtype: str = "auto",
        max_length: int | None = None,
        batch_tokens: int | None = None,
        long_docs: str = "truncate",
        chunk_tokens: int = 512,
        max_chunks: int = 8,
        packing: str = "auto",
    ) -> None:
        self.name = name
        self.source = resolve_model(model)
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(self.source, padding_side="left")
        attention = pick_attention(self.device)
        lm = AutoModelForCausalLM.from_pretrained(
            self.source, dtype=self.dtype, attn_implementation=attention
        )
        # packed: the batch as one sequence, position ids restarting at each input; transformers
        # reads the restarts as sequence bounds (flash-attention's varlen kernels, or a
        # block-diagonal causal mask elsewhere)
        self.packed = pick_packing(packing, attention)
        lm = lm.to(self.device).eval()  # type: ignore[arg-type]
        self.decoder = lm.get_decoder()
        self.max_length = max_length or 8192
        self.batch_tokens = batch_tokens or 16384
        self.long_docs = long_docs
        self.chunk_tokens = chunk_tokens
        self.max_chunks = max_chunks
        self.prefix_ids: list[int] = self.tokenizer.encode(PREFIX, add_special_tokens=False)
        self.suffix_ids: list[int] = self.tokenizer.encode(SUFFIX, add_special_tokens=False)
        self.no_id = int(self.tokenizer.convert_tokens_to_ids("no"))
        self.yes_id = int(self.tokenizer.convert_tokens_to_ids("yes"))
        head = lm.get_output_embeddings()
        self.head = head.weight.detach()[[self.no_id, self.yes_id]].float().clone()
        bias = getattr(head, "bias", None)
        self.head_bias = (
            bias.detach()[[self.no_id, self.yes_id]].float().clone() if bias is not None else None
        )
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.tokenizer.eos_token_id or 0)

    def encode(self, query: str, documents: Sequence[str], instruction: str | None) -> list[list[Encoded]]:
        """The card's ``process_inputs`` per input: prompt, its end truncated, prefix and suffix."""
        budget = self.max_length - len(self.prefix_ids) - len(self.suffix_ids)
        per_doc = self.documents_as_chunks(documents)
        texts = [format_instruction(instruction, query, c) for chunks in per_doc for c in chunks]
        ids = self.tokenizer(
            texts, padding=False, truncation="longest_first", return_attention_mask=False, max_length=budget
        )["input_ids"]
        out: list[list[Encoded]] = []
        k = 0
        for chunks in per_doc:
            out.append([(self.prefix_ids + ids[k + j] + self.suffix_ids, None) for j in range(len(chunks))])
            k += len(chunks)
        return out

    @torch.inference_mode()
    def forward(self, batch: Sequence[Encoded]) -> list[float]:
        """P(yes) for each input of the batch."""
        if self.packed:
            row, positions, _, starts = packed_layout(batch)
            ends = starts + torch.tensor([len(e[0]) for e in batch]) - 1
            out = self.decoder(
                input_ids=row.to(self.device), position_ids=positions.to(self.device), use_cache=False
            ).last_hidden_state[0]
            return self._p_yes(out[ends.to(out.device)])
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (ids, _) in enumerate(batch):
            input_ids[i, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[i, width - len(ids) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        hidden = self.decoder(
            input_ids=input_ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device),
            use_cache=False,
        ).last_hidden_state[:, -1, :]
        return self._p_yes(hidden)

    def _p_yes(self, hidden: torch.Tensor) -> list[float]:
        """P(yes) from the last positions' hidden states: the two head rows, a softmax."""
        logits = hidden.float() @ self.head.to(hidden.device).T
        if self.head_bias is not None:
            logits = logits + self.head_bias.to(hidden.device)
        return [float(x) for x in torch.softmax(logits, dim=-1)[:, 1].tolist()]
