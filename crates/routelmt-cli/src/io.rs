//! JSONL in and out for the front door: outputs are written to a temp file beside the target
//! and renamed into place only on success, so an error never leaves half a file; input errors
//! name the file and line.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use tempfile::NamedTempFile;

/// A file that appears at `dest` only when [`AtomicOutput::commit`] succeeds.
pub struct AtomicOutput {
    writer: BufWriter<NamedTempFile>,
    dest: PathBuf,
}

impl AtomicOutput {
    /// Starts writing `dest` (through a temp file in the same folder).
    pub fn create(dest: &Path) -> Result<Self> {
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = NamedTempFile::new_in(&dir)
            .with_context(|| format!("{}: cannot create output", dest.display()))?;
        Ok(Self { writer: BufWriter::new(tmp), dest: dest.to_path_buf() })
    }

    /// Appends one JSON value and a newline.
    pub fn write_json_line<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        serde_json::to_writer(&mut self.writer, value)
            .and_then(|()| self.writer.write_all(b"\n").map_err(serde_json::Error::io))
            .with_context(|| format!("{}: write failed", self.dest.display()))
    }

    /// Flushes and renames into place.
    pub fn commit(self) -> Result<()> {
        let dest = self.dest;
        let tmp = self
            .writer
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("{}: flush failed", dest.display()))?;
        tmp.as_file().sync_all().ok();
        tmp.persist(&dest)
            .map_err(|e| e.error)
            .with_context(|| format!("{}: cannot move output into place", dest.display()))?;
        Ok(())
    }
}

/// One non-blank input line with its 1-based number.
pub struct Line {
    /// 1-based line number in the file.
    pub number: usize,
    /// The text, without the newline.
    pub text: String,
}

/// Reads the non-blank lines of a JSONL file (blank lines are not records).
pub fn read_lines(path: &Path) -> Result<impl Iterator<Item = Result<Line>>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let shown = path.display().to_string();
    Ok(BufReader::new(file).lines().enumerate().filter_map(move |(i, line)| match line {
        Ok(text) if text.trim().is_empty() => None,
        Ok(text) => Some(Ok(Line { number: i + 1, text })),
        Err(e) => {
            Some(Err(anyhow::Error::new(e).context(format!("{shown}:{}: cannot read line", i + 1))))
        }
    }))
}

/// Collects rejected input lines for `--skip-invalid` and writes them beside the output as
/// `<output>.rejected.jsonl` (`{"line", "error", "text"}` each).
#[derive(Default)]
pub struct Rejects {
    items: Vec<serde_json::Value>,
}

impl Rejects {
    /// Records a rejected line.
    pub fn push(&mut self, line: &Line, error: &str) {
        self.items
            .push(serde_json::json!({"line": line.number, "error": error, "text": line.text}));
    }

    /// Side-file path for an output.
    pub fn path_for(output: &Path) -> PathBuf {
        let mut s = output.as_os_str().to_owned();
        s.push(".rejected.jsonl");
        PathBuf::from(s)
    }

    /// Writes the side file if anything was rejected and says so on stderr.
    pub fn finish(self, output: &Path, input: &Path) -> Result<()> {
        if self.items.is_empty() {
            return Ok(());
        }
        let path = Self::path_for(output);
        let mut out = AtomicOutput::create(&path)?;
        for item in &self.items {
            out.write_json_line(item)?;
        }
        out.commit()?;
        eprintln!(
            "skipped {} invalid line(s) of {}; details in {}",
            self.items.len(),
            input.display(),
            path.display()
        );
        Ok(())
    }
}

/// A progress bar on a terminal, nothing when stderr is piped.
pub fn progress(total: u64, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}
