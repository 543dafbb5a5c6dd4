#!/usr/bin/env bash
# Runs every test of RouteLMT (the README's test command; .ci/run calls it):
# set-up, unit/parity/e2e tests (CPU and wgpu on lavapipe), wasm32 checks, fmt and clippy.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/routelmt-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
set -x
cargo fmt --all -- --check
cargo test --workspace --locked -- --nocapture
cargo check --locked --target wasm32-unknown-unknown -p routelmt-model -p routelmt-route
cargo clippy --workspace --all-targets --locked -- -D warnings
