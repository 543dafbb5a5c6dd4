#!/usr/bin/env bash
# Side-by-side prefill benchmark on the Qwen3-0.6B architecture (random weights), in one run:
# routelmt (burn flex, CPU) vs PyTorch/transformers eager CPU, same shapes; prints both and the
# throughput ratio per batch size. Needs a release build and the venv of scripts/setup-python.sh.
# Usage: scripts/bench_prefill.sh [SEQ] [BATCHES]   (defaults: 64 1,16)
set -euo pipefail
cd "$(dirname "$0")/.."
SEQ=${1:-64}; BATCHES=${2:-1,16}
PY=${ROUTELMT_PY:-$HOME/.cache/routelmt-venv/bin/python}
BIN=${ROUTELMT_BIN:-target/release/routelmt}
ours=$("$BIN" bench prefill --config qwen3-0.6b --seq "$SEQ" --batch "$BATCHES" --device cpu --json)
theirs=$("$PY" scripts/bench_torch_prefill.py --seq "$SEQ" --batch "$BATCHES")
python3 - "$ours" "$theirs" <<'PY'
import json, sys
ours, theirs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"{'batch':>5} {'seq':>4} | {'routelmt tok/s':>14} {'ms/prompt':>9} {'RSS MiB':>8} | {'torch tok/s':>11} {'ms/prompt':>9} {'RSS MiB':>8} | ratio")
for o, t in zip(ours["results"], theirs["results"]):
    print(f"{o['batch']:>5} {o['seq']:>4} | {o['tokens_per_s']:>14.1f} {o['ms_per_prompt']:>9.1f} {o['peak_rss_mb']:>8.0f} |"
          f" {t['tokens_per_s']:>11.1f} {t['ms_per_prompt']:>9.1f} {t['peak_rss_mb']:>8.0f} | {o['tokens_per_s']/t['tokens_per_s']:.2f}x")
print(f"routelmt device: {ours.get('device')}; torch {theirs['torch']} with {theirs['threads']} threads")
PY
