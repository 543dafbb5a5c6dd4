#!/usr/bin/env bash
# Side-by-side prefill benchmark on the Qwen3-0.6B architecture (random weights), in one run:
# routelmt on the CPU (its inference kernels, per --weights; optionally the burn decoder they
# replaced) vs PyTorch/transformers eager CPU, same shapes. Per shape, routelmt runs first,
# then PyTorch; prints one row per variant with its throughput ratio to PyTorch f32, the
# kernels' time profile (GEMM / attention / elementwise) and the CPU cores kept busy.
# Needs a release build and the venv of scripts/setup-python.sh.
#
# Usage: scripts/bench_prefill.sh [SEQ:BATCHES ...]     (default: 64:1,16 256:4)
# Env:   WEIGHTS=f32,q8 (the --weights to time)   BURN=1 (also time the burn decoder)
#        ITERS=5 (timed runs per row, median reported)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${ROUTELMT_PY:-$HOME/.cache/routelmt-venv/bin/python}
BIN=${ROUTELMT_BIN:-target/release/routelmt}
WEIGHTS=${WEIGHTS:-f32,q8}
ITERS=${ITERS:-5}
EXTRA=()
[ "${BURN:-0}" = 1 ] && EXTRA+=(--burn)
[ $# -eq 0 ] && set -- 64:1,16 256:4
for shape in "$@"; do
    seq=${shape%%:*}; batches=${shape#*:}
    ours=$("$BIN" bench prefill --config qwen3-0.6b --seq "$seq" --batch "$batches" --device cpu \
        --weights "$WEIGHTS" --iters "$ITERS" --profile --json "${EXTRA[@]}")
    theirs=$("$PY" scripts/bench_torch_prefill.py --seq "$seq" --batch "$batches" --iters "$ITERS")
    python3 - "$ours" "$theirs" <<'PY'
import json, sys
ours, theirs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
torch = {t["batch"]: t for t in theirs["results"]}
print(f"{'variant':<22} {'batch':>5} {'seq':>4} | {'tok/s':>7} {'ms/prompt':>9} {'busy':>5} {'decoder MiB':>11} | "
      f"{'torch tok/s':>11} {'ms/prompt':>9} | ratio | GEMM ms (GFLOP/s) [packing, copies] / attention / elementwise | allocations")
for o in ours["results"]:
    t = torch[o["batch"]]
    p = o.get("profile")
    prof = (f"{p['gemm_ms']:.0f} ({p['gemm_gflop_per_s']:.0f}) [{p['gemm_packing_ms']:.1f}, {p['gemm_copies_ms']:.1f}]"
            f" / {p['attention_ms']:.0f} / {p['elementwise_ms']:.0f} | {p['allocations']} ({p['allocated_mib']:.0f} MiB)"
            if p else "-")
    dec = f"{o['decoder_mib']:.0f}" if "decoder_mib" in o else "-"
    print(f"{o['variant']:<22} {o['batch']:>5} {o['seq']:>4} | {o['tokens_per_s']:>7.1f} {o['ms_per_prompt']:>9.1f} "
          f"{o.get('cpu_busy', 0):>5.2f} {dec:>11} | {t['tokens_per_s']:>11.1f} {t['ms_per_prompt']:>9.1f} | "
          f"{o['tokens_per_s']/t['tokens_per_s']:.2f}x | {prof}")
shown = set()
for o in ours["results"]:
    if o.get("profile") and o["batch"] not in shown:
        shown.add(o["batch"])
        shapes = ", ".join(f"{g['calls']}x[{g['m']}x{g['k']}]·[{g['k']}x{g['n']}]" for g in o["profile"]["gemm_shapes"])
        print(f"  GEMMs at batch {o['batch']}: {shapes}")
peak = max(o["peak_rss_mb"] or 0 for o in ours["results"])
print(f"routelmt: {ours.get('device')}; peak RSS {peak:.0f} MiB (all variants in one process)")
print(f"torch {theirs['torch']} with {theirs['threads']} threads; peak RSS "
      f"{max(t['peak_rss_mb'] for t in theirs['results']):.0f} MiB")
PY
done
