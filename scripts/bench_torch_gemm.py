#!/usr/bin/env python3
"""torch.matmul (f32, MKL on x86) on the Qwen3-0.6B projection shapes: the reference for
`cargo run --release -p routelmt-kernels --example gemm` (same shapes, median of 7 runs, GFLOP/s).

Run: $HOME/.cache/routelmt-venv/bin/python scripts/bench_torch_gemm.py [ROWS ...]
(default: 64 1024; venv from scripts/setup-python.sh).
"""
import sys
import time

import torch

SHAPES = [("qkv", 1024, 4096), ("o", 2048, 1024), ("gate_up", 1024, 6144), ("down", 3072, 1024)]


def main():
    rows = [int(r) for r in sys.argv[1:]] or [64, 1024]
    torch.manual_seed(0)
    print(f"torch {torch.__version__} with {torch.get_num_threads()} threads")
    for m in rows:
        flops = secs = 0.0
        for name, k, n in SHAPES:
            a, w = torch.randn(m, k) * 0.05, torch.randn(k, n) * 0.05
            a @ w
            times = []
            for _ in range(7):
                t = time.perf_counter()
                a @ w
                times.append(time.perf_counter() - t)
            med = sorted(times)[3]
            f = 2.0 * m * k * n
            print(f"f32 m {m:>5} {name:>8} [{k} x {n}]: {med * 1e3:>8.2f} ms {f / med / 1e9:>6.1f} GFLOP/s")
            flops, secs = flops + f, secs + med
        print(f"f32 m {m:>5}      all: {flops / secs / 1e9:>6.1f} GFLOP/s")


if __name__ == "__main__":
    main()
