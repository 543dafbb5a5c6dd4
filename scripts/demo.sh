#!/usr/bin/env bash
# The README's set-up-and-run command, in two halves; every part prints its wall time, and a
# summary comes at the end.
#   1. The main job, first: scripts/setup.sh (the real Qwen3 tokenizer, lavapipe), the release
#      binary, then the bundled tiny default model (tests/fixtures/models/tiny-default: Qwen3
#      architecture, real Qwen3 vocabulary, random weights): last-prompt-token features of the
#      sample requests, a router trained on the bundled labeled sample (synthetic scores,
#      tests/fixtures/sample/make_labeled.py), used to route the held-out requests at a 30%
#      budget and evaluated against baselines: the table is printed when this half ends.
#   2. The browser page that routes the same way client-side: wasm-bindgen-cli and trunk
#      (scripts/setup-web.sh --tools; built from source, minutes, once), then web/dist (trunk).
# The page's tools come second because on a fresh machine they take most of the time (a cold
# run took 67 minutes and, with them first, printed the table only after 43).
# Idempotent: a second run rebuilds nothing that is current and rewrites $OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
TIMES=()
START=$SECONDS
part() {
  local name=$1 t0=$SECONDS
  shift
  printf '\n== demo: %s\n' "$name" >&2
  "$@"
  TIMES+=("$(printf '%6d s  %s' $((SECONDS - t0)) "$name")")
  printf '== demo: %s done in %d s\n' "$name" $((SECONDS - t0)) >&2
}

BIN=${CARGO_TARGET_DIR:-target}/release/routelmt
MODEL=tests/fixtures/models/tiny-default
TOK=assets/qwen3-tokenizer/tokenizer.json
OUT=${OUT_DIR:-target/demo}

main_job() {
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
  echo "demo: router in $OUT/router, routed records in $OUT/routed.jsonl ($(grep -cE '"route": ?"large"' "$OUT/routed.jsonl") of $(wc -l < "$OUT/routed.jsonl") to the large model), the evaluation above in $OUT/report.json." >&2
  echo "demo: the labels are synthetic and the model is random; point --model at LMT-60-0.6B and --train at real scores for a real router." >&2
}

# trunk's pre-build hook (scripts/build-web.sh) builds the wasm package into web/pkg first.
page_build() {
  PATH="${ROUTELMT_TOOLS:-$HOME/.cache/routelmt-tools}/bin:$PATH" trunk build --release --offline
}

# 1. The main job.
part set-up scripts/setup.sh
echo "demo: building $BIN (the first build takes a while on 2 cores)" >&2
part "release build" cargo build --release --locked
part "main job" main_job

# 2. The browser page.
part "page tools" scripts/setup-web.sh --tools
part "page build" page_build
echo "demo: serve it with: PATH=\"\$HOME/.cache/routelmt-tools/bin:\$PATH\" trunk serve --offline   (then open http://127.0.0.1:8080)" >&2

printf '\ndemo.sh: part times\n' >&2
printf '%s\n' "${TIMES[@]}" >&2
printf '%6d s  total\n' $((SECONDS - START)) >&2
