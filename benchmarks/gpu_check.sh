#!/usr/bin/env bash
# The GPU check, one short script (under 8 minutes on a machine with one NVIDIA GPU): install,
# check CUDA fp16 against CPU fp32, then benchmarks/bench_cuda.py (fp16 vs fp32 forward at batch
# 1-256, decode capacity, vgloss serve at 16 and 64 clients over min(raw fp16, decode)).
#
#   bash benchmarks/gpu_check.sh            # from the repository root, with ../shared/data beside it
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
nvidia-smi -L
"$PYTHON" -m pip install -q torch==2.14.1 torchvision==0.29.1 2>/dev/null || "$PYTHON" -m pip install -q torch torchvision
"$PYTHON" -m pip install -q -e ".[dev]"
"$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'; print(torch.cuda.get_device_name())"
# the suite pins the CPU; on the GPU bench_cuda.py first checks fp16-on-CUDA against fp32-on-CPU
# embeddings of real JPEGs (cosine and top-1 agreement), then measures
timeout 300 "$PYTHON" benchmarks/bench_cuda.py --batches 1 8 32 128 256 --levels 16 64
