#!/usr/bin/env python3
"""PyTorch/transformers eager CPU prefill on the Qwen3-0.6B architecture with random weights,
the reference figure for `routelmt bench prefill` (same config, shapes and output fields).

Run: $HOME/.cache/routelmt-venv/bin/python scripts/bench_torch_prefill.py --seq 64 --batch 1,16
(venv from scripts/setup-python.sh). Prints {"results": [{"batch","seq","tokens_per_s",
"ms_per_prompt","peak_rss_mb"}], "torch": ..., "threads": ...} on stdout.
"""
import argparse
import json
import resource
import statistics
import time

import torch
from transformers import Qwen3Config, Qwen3Model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--batch", default="1,16")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()

    torch.manual_seed(0)
    cfg = Qwen3Config(
        vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
        num_attention_heads=16, num_key_value_heads=8, head_dim=128, rope_theta=1e6,
        rms_norm_eps=1e-6, tie_word_embeddings=True, attn_implementation="eager",
    )
    model = Qwen3Model(cfg).to(torch.float32).eval()
    results = []
    with torch.inference_mode():
        for b in [int(x) for x in args.batch.split(",")]:
            ids = torch.randint(0, cfg.vocab_size, (b, args.seq))
            mask = torch.ones_like(ids)
            for _ in range(args.warmup):
                model(input_ids=ids, attention_mask=mask)
            times = []
            for _ in range(args.iters):
                t0 = time.perf_counter()
                out = model(input_ids=ids, attention_mask=mask).last_hidden_state[:, -1]
                times.append(time.perf_counter() - t0)
                assert out.shape == (b, cfg.hidden_size)
            med = statistics.median(times)
            results.append({
                "batch": b, "seq": args.seq, "tokens_per_s": b * args.seq / med,
                "ms_per_prompt": med * 1e3 / b,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            })
    print(json.dumps({"results": results, "torch": torch.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
