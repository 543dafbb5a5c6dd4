#!/usr/bin/env python3
"""Fixed document-level split of the WMT22 zh->en MQM routing data (standard library only).

Reads the JSONL data file (one segment per line, with a `doc_id`) and writes
`train.jsonl`, `valid.jsonl` and `test.jsonl` to an output directory, keeping every
field of every record and the input order. Each document goes to exactly one part,
decided by

    bucket = int(sha256(doc_id.encode("utf-8")).hexdigest(), 16) % 10
    0-5 -> train, 6-7 -> valid, 8-9 -> test

so the split does not depend on the order of the file or on any seed. Prints the
number of segments and documents in each part.

Command (the output directory must be outside the repository; the data is not
redistributed here):

    python3 experiments/wmt22-smollm2/split.py /work/shared/data/wmt22_zhen_mqm_full.jsonl /tmp/exp/split
"""

import hashlib
import json
import os
import sys

PARTS = ("train", "valid", "test")


def part_of(doc_id):
    bucket = int(hashlib.sha256(doc_id.encode("utf-8")).hexdigest(), 16) % 10
    if bucket <= 5:
        return "train"
    if bucket <= 7:
        return "valid"
    return "test"


def main(argv):
    if len(argv) != 3:
        sys.exit(f"usage: {argv[0]} DATA.jsonl OUT_DIR")
    data, out_dir = argv[1], argv[2]
    os.makedirs(out_dir, exist_ok=True)
    lines = {p: [] for p in PARTS}
    docs = {p: set() for p in PARTS}
    with open(data, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            doc_id = record.get("doc_id")
            if not isinstance(doc_id, str):
                sys.exit(f"{data}:{n}: no string doc_id")
            p = part_of(doc_id)
            lines[p].append(line if line.endswith("\n") else line + "\n")
            docs[p].add(doc_id)
    for p in PARTS:
        with open(os.path.join(out_dir, f"{p}.jsonl"), "w", encoding="utf-8") as f:
            f.writelines(lines[p])
    total = sum(len(v) for v in lines.values())
    for p in PARTS:
        print(f"{p}\t{len(lines[p])} segments\t{len(docs[p])} documents")
    print(f"total\t{total} segments\t{sum(len(v) for v in docs.values())} documents")


if __name__ == "__main__":
    main(sys.argv)
