#!/usr/bin/env bash
# Builds the browser package web/pkg/ (ES module: routelmt_web.js + routelmt_web_bg.wasm +
# .d.ts, `wasm-bindgen --target web`) from crates/routelmt-web, release, for wasm32, and its
# threaded twin web/pkg/threads/ (same API plus initThreadPool; cross-origin isolated pages).
# Trunk runs this as its pre-build hook (Trunk.toml), so `trunk build` / `trunk serve` always
# serve a fresh package; it can also run alone. Needs scripts/setup-web.sh's tools.
# Usage: scripts/build-web.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="${ROUTELMT_TOOLS:-$HOME/.cache/routelmt-tools}/bin"
export PATH="$TOOLS:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/routelmt-target}"
cargo build --release --locked --target wasm32-unknown-unknown -p routelmt-web
wasm="$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/routelmt_web.wasm"

# The threaded build (web/pkg/threads) for cross-origin isolated pages: wasm atomics and
# shared memory, so rayon runs the CPU kernels on Web Workers (wasm-bindgen-rayon). Rust's
# shipped wasm32 standard library is built without atomics, so this one rebuilds it from the
# rust-src component (`-Z build-std`); stable cargo takes that flag only with
# RUSTC_BOOTSTRAP=1. Own target folder: different flags for every crate. The linker makes
# the memory shared and imported (wasm-bindgen then emits thread start-up code, given the TLS
# exports); shared memory needs its maximum up front: 4 GiB, wasm32's limit.
threads_target="${ROUTELMT_THREADS_TARGET:-$CARGO_TARGET_DIR-threads}"
RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$threads_target" \
RUSTFLAGS='--cfg getrandom_backend="wasm_js" -C target-feature=+simd128,+atomics,+bulk-memory,+mutable-globals -C link-arg=--shared-memory -C link-arg=--import-memory -C link-arg=--max-memory=4294967296 -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base' \
  cargo build --release --locked --target wasm32-unknown-unknown -p routelmt-web -Z build-std=panic_abort,std
threads_wasm="$threads_target/wasm32-unknown-unknown/release/routelmt_web.wasm"

out=web/pkg
tmp=$(mktemp -d web/.pkg.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
wasm-bindgen --target web --out-dir "$tmp" "$wasm"
wasm-bindgen --target web --out-dir "$tmp/threads" "$threads_wasm"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
cat > "$tmp/package.json" <<JSON
{
  "name": "routelmt-web",
  "version": "$version",
  "description": "RouteLMT in the browser: route translation requests with a small model's prefill (WebGPU or wasm CPU)",
  "license": "Apache-2.0",
  "type": "module",
  "main": "routelmt_web.js",
  "types": "routelmt_web.d.ts",
  "files": ["routelmt_web.js", "routelmt_web_bg.wasm", "routelmt_web.d.ts", "routelmt_web_bg.wasm.d.ts", "snippets", "threads"],
  "sideEffects": false
}
JSON
rm -rf "$out"
chmod 755 "$tmp"
mv "$tmp" "$out"
trap - EXIT
echo "build-web: wrote $out ($(du -h "$out/routelmt_web_bg.wasm" | cut -f1) wasm)" >&2
