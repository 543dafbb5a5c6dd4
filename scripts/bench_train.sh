#!/usr/bin/env bash
# Training and scoring benchmarks on the Qwen3-0.6B architecture (random weights), CPU:
# 1. `routelmt bench train` for --no-lora and LoRA in separate processes (clean peak RSS);
# 2. `routelmt bench prefill --merged-lora`: plain vs LoRA-merged prefill, interleaved per
#    iteration in one process (scoring with a router = prefill with merged weights).
# Needs a release build. Usage: scripts/bench_train.sh [BATCH] [SEQ] [ITERS]  (defaults: 8 64 3)
set -euo pipefail
cd "$(dirname "$0")/.."
BATCH=${1:-8}; SEQ=${2:-64}; ITERS=${3:-3}
BIN=${ROUTELMT_BIN:-target/release/routelmt}
for mode in no-lora lora; do
  "$BIN" bench train --config qwen3-0.6b --batch "$BATCH" --seq "$SEQ" --mode "$mode" \
    --iters "$ITERS" --warmup 1 --device cpu --json
done
"$BIN" bench prefill --config qwen3-0.6b --seq "$SEQ" --batch 1,16 --iters "$ITERS" \
  --merged-lora --device cpu --json
