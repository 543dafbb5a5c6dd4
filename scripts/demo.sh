#!/usr/bin/env bash
# The README's set-up-and-run command: installs what is needed (scripts/setup.sh), builds the
# release binary, and runs the main job on the bundled tiny default model
# (tests/fixtures/models/tiny-default: Qwen3 architecture, real Qwen3 vocabulary, random
# weights): last-prompt-token features of the sample requests, then a router trained on the
# bundled labeled sample (synthetic scores, tests/fixtures/sample/make_labeled.py), evaluated
# against baselines, and used to route the held-out requests at a 30% budget. Then it builds the
# browser page (web/dist, trunk) that routes the same way client-side.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/setup-web.sh
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
rm -rf "$OUT/router"
"$BIN" train --model "$MODEL" --tokenizer "$TOK" --train tests/fixtures/sample/train.jsonl --valid tests/fixtures/sample/valid.jsonl --output "$OUT/router" --epochs 4 --lr 3e-3 --batch-size 16 --device cpu
"$BIN" route --model "$MODEL" --router "$OUT/router" --tokenizer "$TOK" --input tests/fixtures/sample/valid.jsonl --budget 0.3 --output "$OUT/routed.jsonl" --device cpu
"$BIN" eval --data "$OUT/routed.jsonl" --budget 0.3 --routers random,length,oracle-gain,field:score --output "$OUT/report.json"
set +x
echo "demo: wrote $OUT/tokens.jsonl and $OUT/features.jsonl ($(wc -l < "$OUT/features.jsonl") records); first record:" >&2
head -c 300 "$OUT/features.jsonl"; echo ' ...'
echo "demo: router in $OUT/router, routed records in $OUT/routed.jsonl ($(grep -cE '"route": ?"large"' "$OUT/routed.jsonl") of $(wc -l < "$OUT/routed.jsonl") to the large model)." >&2
echo "demo: the labels are synthetic and the model is random; point --model at LMT-60-0.6B and --train at real scores for a real router." >&2

echo "demo: building the browser page (wasm package + trunk) into web/dist" >&2
PATH="${ROUTELMT_TOOLS:-$HOME/.cache/routelmt-tools}/bin:$PATH" trunk build --release --offline
echo "demo: serve it with: PATH=\"\$HOME/.cache/routelmt-tools/bin:\$PATH\" trunk serve --offline   (then open http://127.0.0.1:8080)" >&2
