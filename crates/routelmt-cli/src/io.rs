//! JSONL in and out for the front door: outputs are written to a temp file beside the target
//! and renamed into place only on success, so an error never leaves half a file; input errors
//! name the file and line.

use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

/// Writes `path` through a temporary file in the same folder, renamed into place only if
/// `write` succeeds (the temporary file is removed otherwise).
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?
        .to_string_lossy();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| {
            format!("cannot write {}: cannot create a file in {}", path.display(), dir.display())
        })?;
    {
        let mut w = BufWriter::with_capacity(1 << 16, tmp.as_file_mut());
        write(&mut w)?;
        w.flush().with_context(|| format!("cannot write {}", path.display()))?;
    }
    #[cfg(unix)]
    {
        // tempfile creates 0600; a result file should get the usual permissions.
        use std::os::unix::fs::PermissionsExt;
        let _ = tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Prints to stdout; a closed pipe (`| head`) is not an error.
pub fn print_stdout(s: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// Writes one JSON value and a newline (JSONL).
pub fn write_json_line<T: Serialize + ?Sized>(w: &mut dyn Write, value: &T) -> Result<()> {
    serde_json::to_writer(&mut *w, value)?;
    w.write_all(b"\n")?;
    Ok(())
}

/// One non-blank input line with its 1-based number.
pub struct Line {
    /// 1-based line number in the file.
    pub number: usize,
    /// The text, without the newline.
    pub text: String,
}

/// Reads the non-blank lines of a JSONL file (blank lines are not records), through the
/// routing crate's reader that every command and the trainer share.
pub fn read_lines(path: &Path) -> Result<impl Iterator<Item = Result<Line>>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let shown = path.display().to_string();
    let lines = routelmt_route::JsonLines::new(BufReader::with_capacity(1 << 20, file));
    Ok(lines.map(move |item| match item {
        Ok((number, text)) => Ok(Line { number, text }),
        Err(e) => Err(anyhow::Error::new(e).context(shown.clone())),
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
        write_atomic(&path, |w| self.items.iter().try_for_each(|item| write_json_line(w, item)))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::bail;

    #[test]
    fn atomic_write_leaves_nothing_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.json");
        let err = write_atomic(&out, |w| {
            w.write_all(b"partial")?;
            bail!("boom")
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        write_atomic(&out, |w| Ok(w.write_all(b"ok")?)).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "ok");
    }
}
