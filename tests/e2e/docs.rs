//! Every repository path the docs name exists (issue 17, item 4).
//!
//! The docs are `README.md`, `BENCHMARKS.md`, `docs/*.md` and the `README*` files of
//! `experiments/*/`, `models/` and `web/`. A path is checked when it appears in inline code, in
//! a fenced `sh` or unlabeled block (the layouts and commands; `toml`, `js` and `json` blocks
//! show a user's own files), or as a markdown link target:
//! - a word whose first component is a top-level entry of the repository (`crates/...`,
//!   `scripts/...`, `web/...`, `Trunk.toml`) must exist, relative to the root; `{a,b}` expands;
//! - a link target must exist relative to the doc's folder (`#anchor` dropped, URLs skipped);
//! - a Rust file named without its crate (`rope.rs`, `cpu/gemm.rs`) or a one-folder name
//!   (`cpu/`) must be the tail of some path in the repository, wherever the file lives.
//!
//! Paths that set-up or a build writes are allowed through [`GENERATED`], and only those that
//! `.gitignore` keeps out of the repository.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::path::Path;

use crate::common::root;

/// Not committed, written by set-up or builds; the docs may name what lies under them. Each
/// must be ignored by `.gitignore` (checked), so a typo in a committed path cannot hide here.
const GENERATED: &[&str] = &[
    "target",             // cargo's build folder: target/release/routelmt (scripts/demo.sh)
    "assets",             // the Qwen3 tokenizer, fetched by scripts/setup.sh
    "web/pkg",            // the wasm package, written by scripts/build-web.sh
    "web/dist",           // the built page, written by trunk (Trunk.toml)
    "web/node_modules",   // the browser tests' npm packages (scripts/setup-web.sh)
    "web/test-artifacts", // screenshots of the browser tests
];

/// The repository's files and folders, as `/`-separated paths relative to the root.
#[derive(Default)]
pub struct Tree {
    files: BTreeSet<String>,
    dirs: BTreeSet<String>,
}

impl Tree {
    /// A tree from a list of file paths (their folders are implied).
    pub fn from_files<'a>(files: impl IntoIterator<Item = &'a str>) -> Self {
        let mut t = Tree::default();
        for f in files {
            let mut at = 0;
            while let Some(i) = f[at..].find('/') {
                t.dirs.insert(f[..at + i].to_string());
                at += i + 1;
            }
            t.files.insert(f.to_string());
        }
        t
    }

    /// The checkout on disk, without `.git` and the generated folders.
    fn scan(dir: &Path) -> Self {
        fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
            for e in fs::read_dir(dir).unwrap().map(Result::unwrap) {
                let name = e.file_name().into_string().unwrap();
                let path = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
                if name == ".git" || generated(&path) {
                    continue;
                }
                if e.file_type().unwrap().is_dir() {
                    walk(&e.path(), &path, out);
                } else {
                    out.push(path);
                }
            }
        }
        let mut files = Vec::new();
        walk(dir, "", &mut files);
        Tree::from_files(files.iter().map(String::as_str))
    }

    fn exists(&self, path: &str) -> bool {
        let p = path.trim_end_matches('/');
        self.files.contains(p) || self.dirs.contains(p)
    }

    /// True when `tail` (`rope.rs`, `cpu/gemm.rs`, `cpu/`) ends some path at a `/`.
    fn has_tail(&self, tail: &str) -> bool {
        let t = tail.trim_end_matches('/');
        let set = if tail.ends_with('/') { &self.dirs } else { &self.files };
        set.iter().any(|p| p == t || p.ends_with(&format!("/{t}")))
    }

    /// Top-level names: the first components that mark a word as a repository path.
    fn top_level(&self) -> BTreeSet<&str> {
        let names = self.files.iter().chain(&self.dirs).map(|p| p.split('/').next().unwrap());
        names.chain(GENERATED.iter().map(|g| g.split('/').next().unwrap())).collect()
    }
}

fn generated(path: &str) -> bool {
    let p = path.trim_end_matches('/');
    GENERATED.iter().any(|g| p == *g || p.starts_with(&format!("{g}/")))
}

/// How a named path is resolved.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// Relative to the repository root.
    Root,
    /// The tail of some path (a file named without its folder).
    Tail,
}

/// A path named by a doc.
#[derive(Debug, PartialEq)]
pub struct Named {
    line: usize,
    path: String,
    kind: Kind,
}

/// A named path that does not exist.
#[derive(Debug, PartialEq)]
pub struct Missing {
    /// The doc, relative to the root.
    pub doc: String,
    /// 1-based line.
    pub line: usize,
    /// The path as resolved.
    pub path: String,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: `{}` does not exist", self.doc, self.line, self.path)
    }
}

/// The paths that the doc at `doc` (relative to the root) names in `text`.
fn named(doc: &str, text: &str, top: &BTreeSet<&str>) -> Vec<Named> {
    let doc_dir = doc.rfind('/').map_or("", |i| &doc[..=i]);
    let mut out = Vec::new();
    let mut fence: Option<bool> = None; // inside a fenced block: Some(whether to check it)
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let trimmed = line.trim_start();
        if let Some(lang) = trimmed.strip_prefix("```") {
            fence = match fence {
                Some(_) => None,
                None => Some(matches!(lang.trim(), "" | "sh" | "bash" | "text")),
            };
            continue;
        }
        let mut words = Vec::new();
        match fence {
            Some(true) => words.extend(line.split_whitespace()),
            Some(false) => continue,
            None => {
                // Odd pieces between backticks are inline code.
                let code = line.split('`').skip(1).step_by(2);
                words.extend(code.flat_map(str::split_whitespace));
                for target in link_targets(line) {
                    for p in expand(&format!("{doc_dir}{target}")) {
                        out.push(Named { line: n, path: normalize(&p), kind: Kind::Root });
                    }
                }
            }
        }
        for w in words {
            if let Some((path, kind)) = classify(w, top) {
                out.extend(expand(&path).into_iter().map(|path| Named { line: n, path, kind }));
            }
        }
    }
    out
}

/// Targets of `[text](target)` and `![alt](target)` that point into the repository.
fn link_targets(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = rest[..end].split('#').next().unwrap().trim();
        let external = target.contains("://") || target.starts_with("mailto:");
        if !target.is_empty() && !external {
            out.push(target);
        }
        rest = &rest[end..];
    }
    out
}

/// A word of code as a path to check, or `None` when it is not a repository path.
fn classify(word: &str, top: &BTreeSet<&str>) -> Option<(String, Kind)> {
    let w = word.rsplit('=').next().unwrap();
    let w = w.trim_start_matches(['(', '[', '"', '\'']);
    let w = w.trim_end_matches([')', ']', ',', '.', ';', ':', '"', '\'']);
    let placeholder = ["://", "*", "<", ">", "...", "…", "$", "~"];
    if w.is_empty() || w.starts_with(['/', '-']) || placeholder.iter().any(|p| w.contains(p)) {
        return None;
    }
    let first = w.split('/').next().unwrap();
    let one_folder = w.ends_with('/') && w.matches('/').count() == 1;
    let name_ok = |s: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || "_-./{},".contains(c));
    if top.contains(first) && (w.contains('/') || w.contains('.')) {
        Some((w.to_string(), Kind::Root))
    } else if name_ok(w) && (w.ends_with(".rs") || one_folder) {
        Some((w.to_string(), Kind::Tail))
    } else {
        None
    }
}

/// Expands one `{a,b,c}` group: `src/{a,b}.rs` -> `src/a.rs`, `src/b.rs`.
fn expand(path: &str) -> Vec<String> {
    match (path.find('{'), path.find('}')) {
        (Some(a), Some(b)) if a < b => path[a + 1..b]
            .split(',')
            .flat_map(|alt| expand(&format!("{}{alt}{}", &path[..a], &path[b + 1..])))
            .collect(),
        _ => vec![path.to_string()],
    }
}

/// Resolves `.` and `..` in a relative path (`docs/../README.md` -> `README.md`).
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "." | "" => {}
            ".." => {
                parts.pop();
            }
            _ => parts.push(c),
        }
    }
    let joined = parts.join("/");
    if path.ends_with('/') { joined + "/" } else { joined }
}

/// The paths that `text` (the doc `doc`) names and `tree` lacks.
pub fn missing(doc: &str, text: &str, tree: &Tree) -> Vec<Missing> {
    let top = tree.top_level();
    named(doc, text, &top)
        .into_iter()
        .filter(|n| match n.kind {
            Kind::Root => !tree.exists(&n.path) && !generated(&n.path),
            Kind::Tail => !tree.has_tail(&n.path),
        })
        .map(|n| Missing { doc: doc.to_string(), line: n.line, path: n.path })
        .collect()
}

/// The docs, relative to the root.
fn docs(root: &Path) -> Vec<String> {
    let mut out = vec!["README.md".to_string(), "BENCHMARKS.md".to_string()];
    let listed = |dir: &str, keep: &dyn Fn(&str) -> bool| -> Vec<String> {
        let Ok(rd) = fs::read_dir(root.join(dir)) else { return Vec::new() };
        let mut v: Vec<String> = rd
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| keep(n))
            .map(|n| format!("{dir}/{n}"))
            .collect();
        v.sort();
        v
    };
    let readme = |n: &str| n.starts_with("README");
    out.extend(listed("docs", &|n| n.ends_with(".md")));
    for exp in listed("experiments", &|_| true) {
        out.extend(listed(&exp, &readme));
    }
    out.extend(listed("models", &readme));
    out.extend(listed("web", &readme));
    out
}

#[test]
fn docs_name_only_paths_that_exist() {
    let root = root();
    let tree = Tree::scan(&root);
    let docs = docs(&root);
    assert!(docs.len() >= 5, "found too few docs: {docs:?}");
    let mut all = Vec::new();
    for doc in &docs {
        let text = fs::read_to_string(root.join(doc)).unwrap();
        all.extend(missing(doc, &text, &tree));
    }
    let list: Vec<String> = all.iter().map(ToString::to_string).collect();
    assert!(all.is_empty(), "paths named in the docs that do not exist:\n{}", list.join("\n"));
}

#[test]
fn generated_paths_are_ignored_by_git() {
    let ignore = fs::read_to_string(root().join(".gitignore")).unwrap();
    for g in GENERATED {
        let rule = format!("/{g}");
        assert!(ignore.lines().any(|l| l.trim() == rule), ".gitignore lacks {rule}");
    }
}

mod extractor {
    use super::*;

    fn tree() -> Tree {
        Tree::from_files([
            "README.md",
            "Trunk.toml",
            "docs/metrics.md",
            "docs/method.md",
            "scripts/demo.sh",
            "crates/routelmt-model/src/decoder/rope.rs",
            "crates/routelmt-model/src/cpu/gemm.rs",
            "crates/routelmt-route/src/rank.rs",
            "crates/routelmt-route/src/report.rs",
        ])
    }

    fn missing_paths(doc: &str, text: &str) -> Vec<(usize, String)> {
        missing(doc, text, &tree()).into_iter().map(|m| (m.line, m.path)).collect()
    }

    #[test]
    fn a_made_up_path_is_reported_with_its_line() {
        let text = "Intro.\nRun `scripts/demo.sh`, then `scripts/no-such-script.sh --fast`.\n";
        assert_eq!(missing_paths("README.md", text), [(2, "scripts/no-such-script.sh".into())]);
        let m = &missing("README.md", text, &tree())[0];
        assert_eq!(m.to_string(), "README.md:2: `scripts/no-such-script.sh` does not exist");
    }

    #[test]
    fn links_resolve_from_the_docs_folder_and_urls_are_skipped() {
        let text = "[m](metrics.md#policies), [x](nowhere.md), [r](../README.md), \
                    [b](https://burn.dev), ![p](web-page.png)";
        assert_eq!(
            missing_paths("docs/method.md", text),
            [(1, "docs/nowhere.md".into()), (1, "docs/web-page.png".into())]
        );
    }

    #[test]
    fn bare_rust_files_are_found_wherever_they_live() {
        let text = "`rope.rs`, `cpu/gemm.rs`, `cpu/`, `gone.rs`, `decoder/gemm.rs`, `nope/`";
        let want = [(1, "gone.rs".into()), (1, "decoder/gemm.rs".into()), (1, "nope/".into())];
        assert_eq!(missing_paths("docs/method.md", text), want);
    }

    #[test]
    fn braces_expand_and_each_alternative_is_checked() {
        let text = "`crates/routelmt-route/src/{rank,metrics,report}.rs`";
        let want = [(1, "crates/routelmt-route/src/metrics.rs".into())];
        assert_eq!(missing_paths("docs/metrics.md", text), want);
    }

    #[test]
    fn fenced_blocks_count_except_example_configs() {
        let text = "```sh\nscripts/demo.sh && scripts/gone.sh\n```\n\
                    ```toml\nmodel = \"models/LMT-60-0.6B\"\n```\n\
                    ```\ncrates/routelmt-web   the browser (js/io.js)\n```\n";
        let want = [(2, "scripts/gone.sh".into()), (8, "crates/routelmt-web".into())];
        assert_eq!(missing_paths("README.md", text), want);
    }

    #[test]
    fn generated_outputs_and_non_paths_pass() {
        let text = "`target/release/routelmt`, `web/pkg/threads/`, `assets/qwen3-tokenizer/`, \
                    `Trunk.toml`, `router.json`, `$HOME/.cache/x`, `/tmp/full-size`, \
                    `~/.cache/routelmt-tools`, `ROUTER_DIR/.routelmt-train/`, `k = p·N`";
        assert_eq!(missing_paths("README.md", text), []);
    }
}
