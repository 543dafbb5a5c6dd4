#!/usr/bin/env bash
# Creates the Python environment RouteLMT's fixture generator and experiment scripts use, outside
# the repository, idempotently (a no-op in about a second when the pinned versions are present):
#   $ROUTELMT_VENV (default $HOME/.cache/routelmt-venv) with pinned torch, transformers, peft,
#   tokenizers, safetensors, numpy, scipy, sacrebleu, gguf, accelerate, sentencepiece (llama.cpp's
#   converter imports it) from plain PyPI (CPU use only; the torch
#   wheel from PyPI also pulls its CUDA libraries, which are not needed).
# The Rust build and tests do not need it; only regenerating tests/fixtures does:
#   scripts/setup-python.sh && $HOME/.cache/routelmt-venv/bin/python tests/fixtures/make_fixtures.py
# Usage: scripts/setup-python.sh   (PYTHON=python3.11 to choose the interpreter; needs >= 3.10)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${ROUTELMT_VENV:-$HOME/.cache/routelmt-venv}"
PYTHON="${PYTHON:-python3}"
PINS=(
  torch==2.15.0
  transformers==5.24.0
  tokenizers==0.23.3
  peft==0.21.2
  safetensors==0.8.0
  numpy==2.4.6
  scipy==1.17.1
  sacrebleu==2.6.0
  gguf==0.19.0
  accelerate==1.15.0
  sentencepiece==0.2.3
)

say() { printf 'setup-python: %s\n' "$*" >&2; }

# True when every pin is installed at exactly its version.
pins_ok() {
  [ -x "$VENV/bin/python" ] || return 1
  "$VENV/bin/python" - "${PINS[@]}" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version, PackageNotFoundError
bad = []
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have is None or have.split("+")[0] != want:
        bad.append(f"{name} {have} != {want}")
sys.exit(1 if bad else 0)
EOF
}

if pins_ok; then
  say "ok ($VENV)"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
fi
say "installing ${PINS[*]}"
"$VENV/bin/python" -m pip install --quiet "${PINS[@]}"
pins_ok || { say "pinned versions still missing after install"; exit 1; }
say "ok ($VENV)"
