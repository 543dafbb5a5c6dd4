#!/usr/bin/env python3
"""Checks that a router trained and exported by routelmt loads in PEFT and gives our scores.

1. Trains a LoRA (r 8, alpha 32) + gain-head router on the tiny fixture `tiny-gqa` with
   `routelmt train`, on synthetic records made here, and scores the validation records with
   `routelmt score` (LoRA merged into the weights).
2. Loads the same base with transformers and the exported adapter folder with
   `peft.PeftModel.from_pretrained`, takes the final-layer last-token state, applies the head
   from `head.safetensors`, unmerged and after `merge_and_unload()`.
3. Writes the largest differences to docs/peft-export-check.json (committed beside docs/peft-export-check.md).

Regenerate (needs a release build and the venv of scripts/setup-python.sh):
    cargo build --release && $HOME/.cache/routelmt-venv/bin/python scripts/check_peft_export.py
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import peft
import torch
import transformers
from safetensors.torch import load_file
from transformers import Qwen3ForCausalLM

ROOT = Path(__file__).resolve().parent.parent
BIN = os.environ.get("ROUTELMT_BIN", str(ROOT / "target/release/routelmt"))
BASE = ROOT / "tests/fixtures/models/tiny-gqa"
OUT = ROOT / "docs/peft-export-check.json"
TOLERANCE = 1e-4


def records(n: int, seed: int) -> list[dict]:
    gen = np.random.default_rng(seed)
    out = []
    for i in range(n):
        ids = [int(x) for x in gen.integers(20, 500, size=int(gen.integers(6, 30)))]
        gain = float(gen.normal(0, 0.3))
        if gen.random() < 0.5:
            ids[int(gen.integers(0, len(ids) - 1))] = 7
            gain += 3.0
        small = float(gen.uniform(40, 60))
        out.append({"id": f"r{i}", "input_ids": ids, "score_small": small,
                    "score_large": small + gain})
    return out


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def run(*args: str) -> None:
    r = subprocess.run([BIN, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"routelmt {args[0]} failed:\n{r.stderr}")


@torch.no_grad()
def head_scores(model, rows: list[dict], w: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    out = []
    for r in rows:
        x = torch.tensor([r["input_ids"]], dtype=torch.long)
        h = model(input_ids=x, output_hidden_states=True).hidden_states[-1][0, -1]
        out.append(float(h @ w[0] + b[0]))
    return np.array(out)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train, valid = records(96, 1), records(32, 2)
        write_jsonl(tmp / "train.jsonl", train)
        write_jsonl(tmp / "valid.jsonl", valid)
        router = tmp / "router"
        run("train", "--model", str(BASE), "--train", str(tmp / "train.jsonl"),
            "--valid", str(tmp / "valid.jsonl"), "--output", str(router), "--epochs", "2",
            "--batch-size", "16", "--lr", "3e-3", "--device", "cpu")
        run("score", "--model", str(BASE), "--router", str(router),
            "--input", str(tmp / "valid.jsonl"), "--output", str(tmp / "scored.jsonl"),
            "--device", "cpu")
        ours = np.array([json.loads(l)["score"]
                         for l in (tmp / "scored.jsonl").read_text().splitlines()])
        head = load_file(str(router / "head.safetensors"))
        w, b = head["head.weight"], head["head.bias"]
        config = json.loads((router / "adapter_config.json").read_text())

        base = Qwen3ForCausalLM.from_pretrained(BASE, dtype=torch.float32,
                                                attn_implementation="eager").eval()
        pm = peft.PeftModel.from_pretrained(base, str(router)).eval()
        n_lora = sum(1 for n, _ in pm.named_modules() if n.endswith(".lora_A"))
        unmerged = head_scores(pm, valid, w, b)
        merged = head_scores(pm.merge_and_unload().eval(), valid, w, b)
        base_only = head_scores(
            Qwen3ForCausalLM.from_pretrained(BASE, dtype=torch.float32).eval(), valid, w, b)

    d_unmerged = float(np.max(np.abs(ours - unmerged)))
    d_merged = float(np.max(np.abs(ours - merged)))
    d_base = float(np.max(np.abs(ours - base_only)))
    result = {
        "what": "a router trained and exported by `routelmt train` on tiny-gqa, loaded with "
                "peft.PeftModel.from_pretrained; head applied to the final last-token state",
        "peft": peft.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "records": len(ours),
        "lora_modules_loaded": n_lora,
        "r": config["r"],
        "lora_alpha": config["lora_alpha"],
        "max_abs_diff_unmerged": d_unmerged,
        "max_abs_diff_merged": d_merged,
        "max_abs_diff_without_adapter": d_base,
        "tolerance": TOLERANCE,
        "ok": d_unmerged <= TOLERANCE and d_merged <= TOLERANCE and d_base > 100 * TOLERANCE,
    }
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not result["ok"]:
        sys.exit("exported adapter does not reproduce our scores in PEFT")


if __name__ == "__main__":
    main()
