#!/usr/bin/env bash
# The README's set-up-and-run command: installs what is needed (scripts/setup.sh), builds the
# release binary, and runs the main job (last-prompt-token features of the small model) on the
# bundled tiny default model (tests/fixtures/models/tiny-default: Qwen3 architecture, real
# Qwen3 vocabulary, random weights) and the bundled sample requests, saying what it did.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "demo: building target/release/routelmt (first build takes a while on 2 cores)" >&2
cargo build --release --locked
BIN=target/release/routelmt
MODEL=tests/fixtures/models/tiny-default
TOK=assets/qwen3-tokenizer/tokenizer.json
OUT=${OUT_DIR:-target/demo}
mkdir -p "$OUT"
set -x
"$BIN" info --model "$MODEL" --device cpu
"$BIN" tokenize --model "$MODEL" --tokenizer "$TOK" --input tests/fixtures/sample/requests.jsonl --output "$OUT/tokens.jsonl"
"$BIN" features --model "$MODEL" --tokenizer "$TOK" --input tests/fixtures/sample/requests.jsonl --output "$OUT/features.jsonl" --device auto
set +x
echo "demo: wrote $OUT/tokens.jsonl and $OUT/features.jsonl ($(wc -l < "$OUT/features.jsonl") records); first record:" >&2
head -c 300 "$OUT/features.jsonl"; echo ' ...'
