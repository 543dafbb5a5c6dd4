//! Helpers shared by the end-to-end tests: where the fixtures are, a builder for `routelmt`
//! command lines, and readers for what the binary writes and prints.
#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The workspace root (fixtures live under `tests/fixtures`).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Path of a committed fixture.
pub fn fixture(rel: &str) -> PathBuf {
    root().join("tests/fixtures").join(rel)
}

/// A `routelmt` command line, built flag by flag. It is cheap to clone, so a test builds the
/// flags that several runs share once and adds what differs to each clone.
#[derive(Clone, Debug)]
pub struct Cli {
    args: Vec<OsString>,
}

/// `routelmt` followed by the subcommand words of `command`, e.g. `cli("eval")` or
/// `cli("bench prefill")`.
pub fn cli(command: &str) -> Cli {
    Cli { args: command.split_whitespace().map(OsString::from).collect() }
}

impl Cli {
    /// Adds `flag value`; the value may be a `&str`, a `String` or a path.
    pub fn arg(mut self, flag: &str, value: impl AsRef<OsStr>) -> Self {
        self.args.push(flag.into());
        self.args.push(value.as_ref().to_owned());
        self
    }

    /// Adds a flag that takes no value (`--json`, `--asc`, `--help`).
    pub fn flag(mut self, flag: &str) -> Self {
        self.args.push(flag.into());
        self
    }

    /// Runs the real binary; asserts nothing.
    pub fn run(&self) -> Output {
        Command::new(env!("CARGO_BIN_EXE_routelmt"))
            .args(&self.args)
            .output()
            .expect("run routelmt")
    }

    /// Runs and asserts success; on failure the message shows the command line and its stderr.
    pub fn ok(&self) -> Output {
        let o = self.run();
        assert!(o.status.success(), "`{self}` failed ({}):\n{}", o.status, stderr(&o));
        o
    }

    /// Runs and asserts failure (any unsuccessful exit).
    pub fn fails(&self) -> Output {
        let o = self.run();
        assert!(!o.status.success(), "should fail: `{self}`");
        o
    }

    /// Runs and asserts the exit code `code` (1: bad input or I/O, 2: bad arguments).
    pub fn exits(&self, code: i32) -> Output {
        let o = self.run();
        assert_eq!(o.status.code(), Some(code), "`{self}`:\n{}", stderr(&o));
        o
    }
}

/// The command line as a shell would show it (for failure messages).
impl fmt::Display for Cli {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("routelmt")?;
        for a in &self.args {
            write!(f, " {}", a.to_string_lossy())?;
        }
        Ok(())
    }
}

/// Stdout as a string.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stderr as a string.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Stdout parsed as one JSON value.
pub fn stdout_json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", stdout(o)))
}

/// A text file's content; panics naming the file.
pub fn read_text(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A JSON file.
pub fn read_json(path: impl AsRef<Path>) -> Value {
    let path = path.as_ref();
    serde_json::from_str(&read_text(path))
        .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", path.display()))
}

/// The lines of a text file.
pub fn read_lines(path: impl AsRef<Path>) -> Vec<String> {
    read_text(path).lines().map(str::to_string).collect()
}

/// A JSONL file, one value per line.
pub fn read_jsonl(path: impl AsRef<Path>) -> Vec<Value> {
    let path = path.as_ref();
    read_text(path)
        .lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}:{}: invalid JSON: {e}", path.display(), i + 1))
        })
        .collect()
}

/// The names of the entries of `dir`, sorted.
pub fn files_in(dir: impl AsRef<Path>) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Writes `text` as-is (no newline added) to the input file `dir/name` and returns its path.
pub fn write_input(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Asserts that two JSON values agree: numbers within the relative tolerance `rel_tol` (absolute
/// below magnitude 1), anything else exactly. `what` names the value in the failure message.
pub fn assert_close(what: &str, got: &Value, want: &Value, rel_tol: f64) {
    match (got.as_f64(), want.as_f64()) {
        (Some(g), Some(w)) => {
            assert!((g - w).abs() <= rel_tol * w.abs().max(1.0), "{what}: got {g}, want {w}")
        }
        _ => assert_eq!(got, want, "{what}"),
    }
}
