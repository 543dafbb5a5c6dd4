#!/usr/bin/env bash
# Integration test of the gateway between two real peers (issue 20): the official `openai`
# Python SDK as the client and llama.cpp's `llama-server` (built from the PyPI sdist by
# scripts/setup-llamacpp.sh) serving the SmolLM2-135M-Instruct GGUF as the upstream, buffered
# and streaming, faults and a secrets sweep (tests/integration/openai_llama_server.py).
#
# Not in scripts/test.sh: building llama.cpp takes about 15 minutes on 2 cores, which a cold CI
# run cannot spare (it is cached under $HOME afterwards; the test itself takes about 30 s).
# Usage: scripts/test_llamacpp.sh
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf 'test_llamacpp: %s\n' "$*" >&2; }

LLAMA=$(scripts/setup-llamacpp.sh | tail -1)
GGUF=$(models/fetch.sh smollm2-135m-instruct-q4_1 | tail -1)
[ -f assets/qwen3-tokenizer/tokenizer.json ] || scripts/setup.sh >&2
# The client's own small venv: the openai SDK only.
VENV="$HOME/.cache/routelmt-venv-openai"
OPENAI_PIN=openai==3.63.0
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('openai') != '${OPENAI_PIN#*==}')" 2>/dev/null; then
  say "installing $OPENAI_PIN into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet "$OPENAI_PIN"
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/routelmt-target}"
cargo build -q -p routelmt-cli --locked
"$VENV/bin/python" tests/integration/openai_llama_server.py \
  "$CARGO_TARGET_DIR/debug/routelmt" "$LLAMA/llama-server" "$GGUF"
