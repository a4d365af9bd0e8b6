"""The model stage: our Qwen3-Reranker path against the model card's code, same model, same machine.

Random weights in the real Qwen3-Reranker-0.6B shape (speed does not depend on the values),
a byte-level BPE tokenizer trained on the corpus text, SciFact abstracts cut to 100-300
tokens as candidates. For each case it prints tokens/s, pairs/s, padding waste, peak memory
and p50/p99 latency of one search (alone, and with 8 searches at once), ours and the
card's (batches of 16, as its users run it), with the ratio; on CUDA (or with --one-thread)
also ours 8 at once with one thread tokenizing and running, against the batcher's default of
tokenizing the next group while the model runs; and the useful work rate:
FLOPs of the transformer layers over real tokens per second against this machine's own
fp32 matmul rate (or MFU against the GPU's bf16 peak).

    python bench/model_throughput.py                 # CPU: 2 layers x 100 candidates, 28 layers x 20
    python bench/model_throughput.py --device cuda   # GPU: the full model, 100 candidates of 256 tokens
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sidecar.engine.batcher import Batcher  # noqa: E402
from sidecar.engine.protocol import ScoreRequest  # noqa: E402
from sidecar.engine.qwen3 import Qwen3Reranker  # noqa: E402
from sidecar.percentile import percentile  # noqa: E402
from testkit.qwen3_card import CardReranker  # noqa: E402
from testkit.synthetic import save_qwen3_reranker  # noqa: E402

SHAPE = {
    "hidden": 1024,
    "heads": 16,
    "kv_heads": 8,
    "head_dim": 128,
    "intermediate": 3072,
    "vocab_size": 151_669,
}


@dataclass
class Case:
    name: str
    layers: int
    candidates: int
    min_tokens: int
    max_tokens: int
    reps: int
    concurrent: bool


def layer_flops(seq_len: int, layers: int) -> float:
    """Forward FLOPs of the transformer layers for one sequence (projections, MLP, causal attention)."""
    h, q_dim, kv_dim, mlp = (
        SHAPE["hidden"],
        SHAPE["heads"] * SHAPE["head_dim"],
        SHAPE["kv_heads"] * SHAPE["head_dim"],
        SHAPE["intermediate"],
    )
    params = h * q_dim + 2 * h * kv_dim + q_dim * h + 3 * h * mlp
    attention = 2 * seq_len * seq_len * q_dim  # QK^T and AV, causal: half of 2 * 2 * n^2 * d each
    return layers * (2 * params * seq_len + attention)


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    """This machine's dense matmul FLOP/s for a large square product (best of three rounds)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    best = 0.0
    for _ in range(3):
        sync(device)
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t))
    return best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class PeakMemory:
    """Peak memory during one phase: torch's CUDA peak, or resident memory sampled every 5 ms."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> PeakMemory:
        self.peak = 0
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        else:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.wait(0.005):
            with open(f"/proc/{os.getpid()}/statm") as f:
                self.peak = max(self.peak, int(f.read().split()[1]) * page)

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()

    @property
    def mb(self) -> float:
        return self.peak / 2**20


def load_texts(data: Path) -> tuple[list[str], list[str]]:
    docs, queries = [], []
    with (data / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            docs.append(f"{d['title']}\n{d['text']}")
    with (data / "queries.jsonl").open(encoding="utf-8") as f:
        queries = [json.loads(line)["text"] for line in f]
    return docs, queries


def synthetic_texts(seed: int = 0) -> tuple[list[str], list[str]]:
    """Documents and queries of pseudo-words, for a machine with no dataset on it (the GPU check):
    speed does not depend on what the tokens mean."""
    rnd = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rnd.choices(letters, k=rnd.randint(3, 9))) for _ in range(3000)]
    docs = [" ".join(rnd.choices(vocab, k=rnd.randint(300, 420))) for _ in range(1200)]
    queries = [" ".join(rnd.choices(vocab, k=rnd.randint(4, 12))) for _ in range(200)]
    return docs, queries


def candidates(tokenizer: object, docs: list[str], n: int, lo: int, hi: int, rnd: random.Random) -> list[str]:
    """Documents cut to a random length of lo..hi tokens."""
    out: list[str] = []
    for d in rnd.sample(docs, len(docs)):
        ids = tokenizer(d, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
        if len(ids) < lo:
            continue
        out.append(tokenizer.decode(ids[: rnd.randint(lo, hi)]))  # type: ignore[attr-defined]
        if len(out) == n:
            return out
    raise SystemExit("not enough long documents in the corpus")


async def run_ours(
    model: Qwen3Reranker,
    searches: list[tuple[str, list[str]]],
    concurrent: int,
    batch_tokens: int,
    prepare_ahead: bool = True,
) -> tuple[list[float], float, Batcher]:
    batcher = Batcher(
        "bench",
        lambda: model,
        batch_tokens=batch_tokens,
        max_wait_ms=2,
        max_queue=10_000,
        prepare_ahead=prepare_ahead,
    )
    await batcher.start()
    batcher.stats.__init__()  # type: ignore[misc]  # count the measured runs only
    latencies: list[float] = []

    async def one(query: str, docs: list[str]) -> None:
        t = time.perf_counter()
        await batcher.score(ScoreRequest.of([query], docs, None, 3600))
        latencies.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    for i in range(0, len(searches), concurrent):
        await asyncio.gather(*(one(q, d) for q, d in searches[i : i + concurrent]))
    wall = time.perf_counter() - t0
    batcher.stop()
    return latencies, wall, batcher


def real_tokens(model: Qwen3Reranker, searches: list[tuple[str, list[str]]]) -> list[int]:
    return [len(e[0]) for q, docs in searches for chunks in model.encode(q, docs, None) for e in chunks]


def report_row(
    label: str, lat: list[float], wall: float, tokens: int, pairs: int, waste: float, mem: float
) -> dict[str, float]:
    row = {
        "tok_s": tokens / wall,
        "pairs_s": pairs / wall,
        "p50": statistics.median(lat),
        "p99": percentile(lat, 99),
        "waste": waste,
        "mem": mem,
    }
    print(
        f"  {label:<28}{row['tok_s']:>10.0f}{row['pairs_s']:>9.1f}{row['p50'] * 1000:>11.0f}"
        f"{row['p99'] * 1000:>11.0f}{waste:>9.1%}{mem:>10.0f}"
    )
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reps", type=int, default=2, help="searches timed alone (ours)")
    ap.add_argument("--batch-tokens", type=int, default=16384)
    ap.add_argument("--synthetic", action="store_true", help="pseudo-word texts instead of --data")
    ap.add_argument(
        "--packing",
        default="auto",
        choices=("auto", "on", "off"),
        help="ours: packed batches (auto: where flash-attention's varlen kernels are)",
    )
    ap.add_argument(
        "--one-thread",
        action="store_true",
        help="also run ours 8 at once with one thread tokenizing and running (on CUDA: always)",
    )
    ap.add_argument(
        "--ref-concurrent",
        action="store_true",
        help="also run the card's code on the 8 concurrent searches (slow on CPU)",
    )
    args = ap.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    rnd = random.Random(0)
    docs, queries = synthetic_texts() if args.synthetic or not args.data.is_dir() else load_texts(args.data)
    if device.type == "cuda":
        cases = [Case("28 layers, 100 x 256 tokens", 28, 100, 256, 256, 10, True)]
        peak = 790e12
        peak_name = "bf16 peak (H100/H200 dense)"
    else:
        cases = [
            Case("2 layers, 100 x 100-300 tokens", 2, 100, 100, 300, args.reps, True),
            Case("28 layers, 20 x 100-300 tokens", 28, 20, 100, 300, 1, False),
        ]
        peak = matmul_rate(device, torch.float32)
        peak_name = "fp32 matmul measured here"
    print(
        f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()};"
        f" {peak_name}: {peak / 1e9:.0f} GFLOP/s"
    )

    with tempfile.TemporaryDirectory(prefix="qwen3-bench-") as tmp:
        for case in cases:
            path = save_qwen3_reranker(
                Path(tmp) / f"l{case.layers}",
                docs[:2000] + queries,
                layers=case.layers,
                tokenizer_vocab=8000,
                **SHAPE,
            )
            ours = Qwen3Reranker(
                str(path),
                device=args.device,
                dtype="bfloat16" if device.type == "cuda" else "float32",
                batch_tokens=args.batch_tokens,
                packing=args.packing,
            )
            print(f"ours: {'packed' if ours.packed else 'padded'} batches")
            full_lm = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
            card = CardReranker(full_lm, ours.tokenizer)
            searches = [
                (
                    rnd.choice(queries),
                    candidates(ours.tokenizer, docs, case.candidates, case.min_tokens, case.max_tokens, rnd),
                )
                for _ in range(max(case.reps, 8))
            ]
            lengths = real_tokens(ours, searches[:1])
            print(
                f"\n{case.name}: {len(lengths)} pairs of {min(lengths)}-{max(lengths)} tokens"
                " per search (prompt included)"
            )
            print(
                f"  {'':<28}{'tokens/s':>10}{'pairs/s':>9}{'p50 ms':>11}{'p99 ms':>11}"
                f"{'padding':>9}{'peak MB':>10}"
            )
            ours.warm_up()
            timed = searches[: case.reps]
            with PeakMemory(device) as mem:
                lat, wall, b = asyncio.run(run_ours(ours, timed, 1, args.batch_tokens))
            toks = real_tokens(ours, timed)
            mine = report_row("ours, alone", lat, wall, sum(toks), len(toks), b.stats.padding_waste, mem.mb)
            useful = sum(layer_flops(n, case.layers) for n in toks) / wall

            toks8 = real_tokens(ours, searches[:8])
            if case.concurrent:
                with PeakMemory(device) as mem:
                    lat8, wall8, b8 = asyncio.run(run_ours(ours, searches[:8], 8, args.batch_tokens))
                report_row(
                    "ours, 8 at once", lat8, wall8, sum(toks8), len(toks8), b8.stats.padding_waste, mem.mb
                )
                if args.one_thread or device.type == "cuda":  # what tokenizing ahead is worth
                    with PeakMemory(device) as mem:
                        lat1, wall1, b1 = asyncio.run(
                            run_ours(ours, searches[:8], 8, args.batch_tokens, prepare_ahead=False)
                        )
                    report_row(
                        "ours, 8 at once, one thread",
                        lat1,
                        wall1,
                        sum(toks8),
                        len(toks8),
                        b1.stats.padding_waste,
                        mem.mb,
                    )

            q, d = searches[0]
            ref_toks = real_tokens(ours, searches[:1])
            padded = sum(
                max(ref_toks[i : i + 16]) * len(ref_toks[i : i + 16]) for i in range(0, len(ref_toks), 16)
            )
            with PeakMemory(device) as mem:
                t = time.perf_counter()
                card.score(q, d, batch_size=16)
                sync(device)
                ref_wall = time.perf_counter() - t
            ref = report_row(
                "card's code, alone (x16)",
                [ref_wall],
                ref_wall,
                sum(ref_toks),
                len(ref_toks),
                1 - sum(ref_toks) / padded,
                mem.mb,
            )
            label = "card's code, 8 at once"
            if args.ref_concurrent and case.concurrent:
                lat_r8: list[float] = []
                with PeakMemory(device) as mem:
                    t0 = time.perf_counter()
                    for q, d in searches[:8]:
                        card.score(q, d, batch_size=16)
                        lat_r8.append(time.perf_counter() - t0)
                report_row(
                    label, lat_r8, time.perf_counter() - t0, sum(toks8), len(toks8), float("nan"), mem.mb
                )
            elif case.concurrent:
                print(f"  {label:<28}  not run (--ref-concurrent): it has no batching across searches")
            print(f"  tokens/s ours / card's code: {mine['tok_s'] / ref['tok_s']:.1f}x")
            print(
                f"  useful work: {useful / 1e9:.0f} GFLOP/s of transformer layers over real tokens"
                f" = {useful / peak:.0%} of the {peak_name}"
            )
            del ours, card, full_lm
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
