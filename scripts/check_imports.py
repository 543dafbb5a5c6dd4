#!/usr/bin/env python3
"""Checks that no crate has an import circle between its files (scripts/test.sh runs it).

Each `src/**/*.rs` file is a module (`a/mod.rs` is `a`, `a/b.rs` is `a::b`). A file depends on
every module it names through `crate::...` or `super::...` paths (in `use` lines or inline),
resolved to the longest module prefix that is a file. Test-only files (`*tests.rs`, `tests/`)
and `#[cfg(test)]` blocks are left out. A circle is printed with the files on it, and the
script exits 1. For routelmt-model it also checks the floors that its lib.rs and
docs/architecture.md draw: no file imports a module of a higher floor.
Usage: scripts/check_imports.py [CRATE_DIR ...] (default: crates/*).
"""
import glob
import os
import re
import sys


# routelmt-model's floors, bottom up (docs/architecture.md, "Inside routelmt-model").
FLOORS = {
    "crates/routelmt-model": [
        ["error", "precision", "embedding"],
        ["config", "readback"],
        ["limits", "formats"],
        ["tensors", "text"],
        ["decoder"],
        ["cpu"],
        ["model"],
        ["checkpoint"],
        ["router"],
        ["hf", "device"],
    ]
}


def floor_of(crate, module):
    for i, floor in enumerate(FLOORS.get(crate, [])):
        if module.split("::")[0] in floor:
            return i
    return None


def module_of(src, path):
    rel = os.path.relpath(path, src)[:-3].replace(os.sep, "::")
    if rel in ("lib", "main"):
        return ""
    return rel[: -len("::mod")] if rel.endswith("::mod") else rel


def strip_tests(text):
    """Drops `#[cfg(test)]` items (a `mod x { ... }` block or a `mod x;` line)."""
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*", text):
        if m.start() < i:
            continue
        out.append(text[i : m.start()])
        j = m.end()
        semi, brace = text.find(";", j), text.find("{", j)
        if brace == -1 or (semi != -1 and semi < brace):
            i = semi + 1
            continue
        depth, k = 0, brace
        while k < len(text):
            depth += {"{": 1, "}": -1}.get(text[k], 0)
            k += 1
            if depth == 0:
                break
        i = k
    out.append(text[i:])
    return "".join(out)


def check(crate):
    src = os.path.join(crate, "src")
    files = [
        f
        for f in glob.glob(os.path.join(src, "**", "*.rs"), recursive=True)
        if not f.endswith("tests.rs") and f"{os.sep}tests{os.sep}" not in f
    ]
    mods = {module_of(src, f): f for f in files}
    deps = {m: set() for m in mods}
    for m, f in mods.items():
        text = strip_tests(open(f, encoding="utf-8").read())
        text = re.sub(r"//[^\n]*", "", text)  # comments and doc links name no import
        here = m.split("::") if m else []
        is_mod_file = f.endswith("mod.rs") or f.endswith("lib.rs")
        for path in re.findall(r"\b((?:crate|super)(?:::\w+)+)", text):
            parts = path.split("::")
            if parts[0] == "crate":
                parts = parts[1:]
            else:
                base = here if is_mod_file else here[:-1]
                while parts and parts[0] == "super":
                    base, parts = base[:-1], parts[1:]
                parts = base + parts
            for n in range(len(parts), 0, -1):
                target = "::".join(parts[:n])
                if target in mods:
                    if target != m and not m.startswith(target + "::") and target != "":
                        deps[m].add(target)
                    break
    # Parent modules declare their children (`mod x;`): that is not an import.
    for m in deps:
        deps[m] = {d for d in deps[m] if not d.startswith(m + "::") or m == ""}
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in deps[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in deps:
        if v not in index:
            visit(v)
    for comp in sccs:
        files_on = ", ".join(os.path.relpath(mods[c]) for c in comp)
        print(f"import circle in {crate}: {files_on}")
    upward = 0
    if crate.rstrip("/") in FLOORS:
        for m, ds in sorted(deps.items()):
            if m == "":
                continue
            mine = floor_of(crate.rstrip("/"), m)
            if mine is None:
                print(f"{os.path.relpath(mods[m])}: module '{m}' has no floor in FLOORS")
                upward += 1
                continue
            for d in sorted(ds):
                theirs = floor_of(crate.rstrip("/"), d)
                if theirs is not None and theirs > mine:
                    print(f"upward import: {os.path.relpath(mods[m])} ({m}, floor {mine}) uses {d} (floor {theirs})")
                    upward += 1
    return len(sccs) + upward, len(mods)


def main():
    crates = sys.argv[1:] or sorted(glob.glob("crates/*"))
    bad = 0
    for crate in crates:
        n, files = check(crate)
        bad += n
        print(f"{crate}: {files} files, {n} import circles or upward imports")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
