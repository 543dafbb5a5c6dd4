#!/usr/bin/env bash
# Writes web/demo/router/: the demo router the page loads out of the box, trained by the
# routelmt binary on the bundled tiny default model (random weights) and the synthetic labeled
# sample, with its threshold calibrated for a 30% budget on the validation part. It routes by
# meaningless features: it shows the machinery, not a useful router.
# Regenerate: web/demo/make_router.sh [path/to/routelmt]   (default: the debug build)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-${CARGO_TARGET_DIR:-target}/debug/routelmt}
MODEL=tests/fixtures/models/tiny-default
TOK=assets/qwen3-tokenizer/tokenizer.json
OUT=web/demo/router
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -rf "$OUT"
"$BIN" train --model "$MODEL" --tokenizer "$TOK" --train tests/fixtures/sample/train.jsonl \
  --valid tests/fixtures/sample/valid.jsonl --output "$OUT" --epochs 4 --lr 3e-3 --batch-size 16 \
  --seed 0 --device cpu
"$BIN" score --model "$MODEL" --router "$OUT" --tokenizer "$TOK" \
  --input tests/fixtures/sample/valid.jsonl --output "$tmp/scored.jsonl" --device cpu
"$BIN" calibrate --scores "$tmp/scored.jsonl" --field score --budget 0.3 --router "$OUT" \
  --output "$tmp/thresh.json"
