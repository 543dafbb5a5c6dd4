#!/usr/bin/env python3
"""Writes the fuzz seed corpora (fuzz/seeds/<target>/) and fuzz/fixed/tokenizer.json from the
repository's fixtures. Standard library only. Regenerate with:  python3 fuzz/make_seeds.py

fuzz/fixed/router.json and head.safetensors were written by
  routelmt train --model tests/fixtures/models/tiny-llama --no-lora --epochs 1 --batch-size 8 ...
on 32 random input_ids records (a router for the tiny Llama fixture); they are inputs too.
"""
import json
import shutil
import struct
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
FIX = ROOT / "tests" / "fixtures"
SEEDS = FUZZ / "seeds"

TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def gguf_head_len(data: bytes) -> int:
    """Bytes up to the end of the tensor table (GGUF v2/v3)."""
    pos = 8
    n_tensors, n_kv = struct.unpack_from("<QQ", data, pos)
    pos += 16
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def value(t: int) -> None:
        nonlocal pos
        if t == 8:
            (n,) = struct.unpack_from("<Q", data, pos)
            pos += 8 + n
        elif t == 9:
            inner, n = struct.unpack_from("<IQ", data, pos)
            pos += 12
            for _ in range(n):
                value(inner)
        else:
            pos += sizes[t]

    for _ in range(n_kv):
        (n,) = struct.unpack_from("<Q", data, pos)
        pos += 8 + n
        (t,) = struct.unpack_from("<I", data, pos)
        pos += 4
        value(t)
    for _ in range(n_tensors):
        (n,) = struct.unpack_from("<Q", data, pos)
        pos += 8 + n
        (dims,) = struct.unpack_from("<I", data, pos)
        pos += 4 + 8 * dims + 4 + 8
    return pos


def byte_level_tokenizer() -> dict:
    """A byte-level BPE tokenizer.json: GPT-2's 256 byte symbols, a few merges, ChatML specials."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    symbols = [chr(c) for _, c in sorted(zip(bs, cs))]
    vocab = {s: i for i, s in enumerate(symbols)}
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("e", "r")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    specials = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]
    added = [
        {"id": len(vocab) + i, "content": s, "single_word": False, "lstrip": False,
         "rstrip": False, "normalized": False, "special": True}
        for i, s in enumerate(specials)
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]},
    }


def write(target: str, name: str, data: bytes) -> None:
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def main() -> None:
    shutil.rmtree(SEEDS, ignore_errors=True)
    tok = json.dumps(byte_level_tokenizer(), ensure_ascii=False, indent=1).encode()
    (FUZZ / "fixed").mkdir(exist_ok=True)
    (FUZZ / "fixed" / "tokenizer.json").write_bytes(tok)

    for f in ["quants.gguf", "quants-v2.gguf"]:
        write("gguf", f, (FIX / "gguf" / f).read_bytes())
    for f in ["tiny-llama.gguf", "tiny-qwen2.gguf", "tiny-qwen3.gguf"]:
        data = (FIX / "gguf" / f).read_bytes()
        head = data[: gguf_head_len(data)]
        write("gguf", f.replace(".gguf", "-head.gguf"), head)
    write("gguf_checkpoint", "tiny-llama.gguf", (FIX / "gguf" / "tiny-llama.gguf").read_bytes())

    models = FIX / "models"
    for d in sorted(models.iterdir()):
        if (d / "config.json").exists():
            write("config", d.name + ".json", (d / "config.json").read_bytes())
    for f in ["tiny-f16/model.safetensors", "tiny-bf16/model.safetensors"]:
        write("safetensors_header", f.split("/")[0] + ".safetensors", (models / f).read_bytes())
    index = (models / "tiny-sharded" / "model.safetensors.index.json").read_bytes()
    write("safetensors_header", "index.json", index)
    write("tokenizer", "tiny.json", tok)

    cfg = json.dumps({"bos_token": "<s>", "eos_token": {"content": "<|im_end|>"},
                      "chat_template": TEMPLATE}).encode()
    write("chat_template", "tokenizer_config.json", cfg)
    write("chat_template", "chatml.jinja", TEMPLATE.encode())
    listed = json.dumps({"chat_template": [{"name": "default", "template": TEMPLATE}]}).encode()
    write("chat_template", "listed.json", listed)

    lora = models / "tiny-llama-lora"
    write("peft_adapter", "config", b"\x00" + (lora / "adapter_config.json").read_bytes())
    write("peft_adapter", "weights", b"\x01" + (lora / "adapter_model.safetensors").read_bytes())

    write("router_files", "router", b"\x00" + (FUZZ / "fixed" / "router.json").read_bytes())
    write("router_files", "head", b"\x01" + (FUZZ / "fixed" / "head.safetensors").read_bytes())

    route = FIX / "route"
    for f in sorted(route.glob("*.jsonl")):
        write("jsonl", f.name, f.read_bytes())
    sample = FIX / "sample"
    write("jsonl", "train.jsonl", (sample / "train.jsonl").read_bytes()[:4096])
    for i, line in enumerate((sample / "requests.jsonl").read_text().splitlines()[:4]):
        write("request", f"record{i}.json", line.encode())
    chat = {"model": "routelmt", "messages": [
        {"role": "system", "content": "You are a translator."},
        {"role": "user", "content": "Translate the following text from English into German.\n\nEnglish: Hello.\nGerman:"}],
        "stream": False}
    write("request", "chat.json", json.dumps(chat).encode())
    parts = dict(chat, messages=[{"role": "user", "content": [{"type": "text", "text": "Hi"}]}])
    write("request", "parts.json", json.dumps(parts).encode())


if __name__ == "__main__":
    main()
