#!/usr/bin/env bash
# Runs every test of RouteLMT (the README's test command; .ci/run calls it):
# set-up, unit/parity/e2e tests (CPU and wgpu on lavapipe), the wasm32 build and lint, the
# browser page built with trunk and tested in headless Chromium (WebGPU on SwiftShader and
# wasm CPU), fmt and clippy.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/setup-web.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/routelmt-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export PATH="${ROUTELMT_TOOLS:-$HOME/.cache/routelmt-tools}/bin:$PATH"
set -x
cargo fmt --all -- --check
cargo test --workspace --exclude routelmt-web --locked -- --nocapture
cargo clippy --workspace --exclude routelmt-web --all-targets --locked -- -D warnings
cargo clippy --locked --target wasm32-unknown-unknown -p routelmt-web -p routelmt-model -p routelmt-route -- -D warnings
trunk build --release --offline
ROUTELMT_BIN="$CARGO_TARGET_DIR/debug/routelmt" node --test --test-concurrency=1 web/tests/
