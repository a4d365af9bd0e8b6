#!/usr/bin/env bash
# The device check of the model stage (issue "The GPU path"): on a machine with one NVIDIA GPU
# and PyTorch + transformers installed, with no downloads, in under 6 minutes. Random weights in
# the real Qwen3-Reranker-0.6B shape (28 layers), pseudo-word texts: our path against the model
# card's code in the same run, a top-100 x 256-token search alone and 8 at once: tokens/s,
# pairs/s, p50/p99, padding, peak memory, and MFU against the bf16 dense peak; 8 at once also
# with one thread tokenizing and running (what tokenizing ahead of the model is worth).
#
#   bash bench/gpu_check.sh            # packed batches where flash-attn is installed
#   PACKING=off bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python - <<'PY'
import torch, transformers
assert torch.cuda.is_available(), "no CUDA device"
p = torch.cuda.get_device_properties(0)
print(f"{p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, transformers {transformers.__version__}")
try:
    import flash_attn
    print(f"flash-attn {flash_attn.__version__}: packed batches on its varlen kernels")
except ImportError:
    print("flash-attn not installed: padded batches (SDPA)")
PY
timeout 330 python bench/model_throughput.py --device cuda --synthetic --packing "${PACKING:-auto}"
