"""Random-weight models with real tokenizers, saved like hub checkpoints: for tests and benchmarks.

Nothing is downloaded: a byte-level BPE tokenizer (the kind Qwen uses) is trained on the
given texts with the special tokens the reranker prompt needs, and a model of the given
shape is initialised at random and saved next to it, so the real loading code runs.
Speed does not depend on the weight values, so benchmarks can use real shapes.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
_SEED_TEXT = [
    "yes no yes no. Judge whether the Document meets the requirements based on the Query",
    "and the Instruct provided.",
    'Note that the answer can only be "yes" or "no". <Instruct>: <Query>: <Document>: system user assistant',
    "Given a web search query, retrieve relevant passages that answer the query",
]


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 2000) -> object:
    """A byte-level BPE tokenizer with Qwen's chat special tokens; ``yes`` and ``no`` are single tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=QWEN_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = list(_SEED_TEXT) * 50 + list(texts)
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left"
    )
    for word in ("yes", "no"):
        if fast.convert_tokens_to_ids(word) is None or len(fast.encode(word, add_special_tokens=False)) != 1:
            fast.add_tokens([word])
    return fast


def save_qwen3_reranker(
    path: Path,
    texts: Iterable[str],
    *,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    head_dim: int = 16,
    intermediate: int = 128,
    vocab_size: int | None = None,
    tokenizer_vocab: int = 2000,
    tie: bool = True,
    seed: int = 0,
) -> Path:
    """A Qwen3ForCausalLM of the given shape with a trained tokenizer, saved to ``path``."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = train_bpe_tokenizer(texts, tokenizer_vocab)
    n_tokens = len(tokenizer)  # type: ignore[arg-type]
    config = Qwen3Config(
        vocab_size=max(vocab_size or 0, n_tokens),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=intermediate,
        max_position_embeddings=40960,
        tie_word_embeddings=tie,
        pad_token_id=tokenizer.pad_token_id,  # type: ignore[attr-defined]
        eos_token_id=tokenizer.eos_token_id,  # type: ignore[attr-defined]
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)  # type: ignore[attr-defined]
    return path


def save_bert(path: Path, texts: Iterable[str], *, num_labels: int | None = None, seed: int = 0) -> Path:
    """A small BERT with a WordPiece vocabulary of the texts' words: an encoder (bi-encoder
    tests), or with ``num_labels`` a sequence classifier (cross-encoder tests)."""
    from transformers import (  # type: ignore[attr-defined]
        BertConfig,
        BertForSequenceClassification,
        BertModel,
        BertTokenizerFast,
    )

    words = sorted({w.lower().strip(".,;:!?\"'()") for t in texts for w in t.split()} - {""})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt"), model_max_length=512).save_pretrained(path)
    config = BertConfig(  # type: ignore[call-arg]
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=num_labels or 1,
    )
    if num_labels and num_labels > 1:
        config.id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
        config.id2label[num_labels - 1] = "relevant"
        config.label2id = {v: k for k, v in config.id2label.items()}
    torch.manual_seed(seed)
    model = BertModel(config) if num_labels is None else BertForSequenceClassification(config)
    model.save_pretrained(path)
    return path
