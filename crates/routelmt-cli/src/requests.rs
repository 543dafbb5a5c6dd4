//! Request records through the model, for every command that reads them (`tokenize`,
//! `features`, `score`, `route --router`): one driver for read → prepare → batch → run →
//! write or reject. Preparing one request is the model crate's ([`routelmt_model::text::request`]);
//! this file adds files, line numbers, `--skip-invalid` and progress.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use routelmt_model::{
    ChatMode, ModelError, PrepareOptions, Prepared, Tokenizer, TokenizerSource, hf,
};

use crate::args::RecordsIo;
use crate::io::{Line, Rejects, progress, read_lines, write_atomic};

/// The tokenizer, loaded on first use (a file of only `input_ids` never needs one).
pub struct LazyTokenizer {
    model: PathBuf,
    over: Option<PathBuf>,
    mode: ChatMode,
    cell: std::cell::OnceCell<Tokenizer>,
}

impl LazyTokenizer {
    /// `over` (a tokenizer.json or its folder), or the model's own (its folder's tokenizer.json,
    /// or the GGUF's), with chat template use `mode`.
    pub fn new(model: &Path, over: &Option<PathBuf>, mode: ChatMode) -> Self {
        Self { model: model.to_path_buf(), over: over.clone(), mode, cell: Default::default() }
    }
}

impl TokenizerSource for LazyTokenizer {
    fn tokenizer(&self) -> Result<&Tokenizer, ModelError> {
        if let Some(t) = self.cell.get() {
            return Ok(t);
        }
        let t = hf::model_tokenizer(&self.model, self.over.as_deref(), self.mode)?;
        Ok(self.cell.get_or_init(|| t))
    }
}

/// A prepared request and the input line it came from.
pub type Item = (Prepared, Line);

/// Reads `input`, prepares every line, and hands batches of up to `batch_size` prepared
/// requests to `run`, in input order. A line that cannot be prepared fails the whole call with
/// `FILE:LINE: reason`, or, with `rejects`, is recorded there and skipped. Returns the number
/// of requests run.
pub fn for_each_batch(
    input: &Path,
    batch_size: usize,
    tokenizer: &dyn TokenizerSource,
    opts: PrepareOptions,
    mut rejects: Option<&mut Rejects>,
    mut run: impl FnMut(Vec<Item>) -> Result<()>,
) -> Result<usize> {
    let bar = progress(count_lines(input), "records");
    let mut batch = Vec::with_capacity(batch_size);
    let mut n = 0usize;
    for line in read_lines(input)? {
        let line = line?;
        bar.inc(1);
        match routelmt_model::text::request::prepare_json(&line.text, tokenizer, opts) {
            Ok(p) => {
                batch.push((p, line));
                n += 1;
                if batch.len() == batch_size {
                    run(std::mem::take(&mut batch))?;
                }
            }
            Err(e) => match rejects.as_deref_mut() {
                Some(r) => r.push(&line, &routelmt_model::one_line(&e)),
                None => {
                    bail!("{}:{}: {}", input.display(), line.number, routelmt_model::one_line(&e))
                }
            },
        }
    }
    if !batch.is_empty() {
        run(batch)?;
    }
    bar.finish_and_clear();
    Ok(n)
}

/// [`for_each_batch`] writing `io.output` atomically (`run` writes each batch's records) and
/// the rejected lines beside it with `--skip-invalid`.
pub fn write_records(
    io: &RecordsIo,
    batch_size: usize,
    tokenizer: &dyn TokenizerSource,
    opts: PrepareOptions,
    mut run: impl FnMut(Vec<Item>, &mut dyn std::io::Write) -> Result<()>,
) -> Result<usize> {
    let mut rejects = Rejects::default();
    let mut n = 0;
    write_atomic(&io.output, |w| {
        let r = io.skip_invalid.then_some(&mut rejects);
        n = for_each_batch(&io.input, batch_size, tokenizer, opts, r, |batch| run(batch, w))?;
        Ok(())
    })?;
    rejects.finish(&io.output, &io.input)?;
    Ok(n)
}

/// Lines in a file, for the progress bar (0 when it cannot be read: the reader says why).
fn count_lines(path: &Path) -> u64 {
    std::fs::read(path).map(|b| b.iter().filter(|&&c| c == b'\n').count() as u64).unwrap_or(0)
}
