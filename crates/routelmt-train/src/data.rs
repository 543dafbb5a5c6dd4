//! Training records: the routing schema (`score_small`, `score_large`, optional `gain` that
//! must agree), plus either `input_ids` (used verbatim) or `src`/`src_lang`/`tgt_lang`
//! (prompt built and tokenized by the caller's encoder).

use std::io::{BufRead, BufReader};
use std::path::Path;

use routelmt_model::HeadKind;
use routelmt_route::Record;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Result, TrainError};

/// One training example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Token ids of the full chat-templated prompt.
    pub ids: Vec<u32>,
    /// `score_small`.
    pub score_small: f64,
    /// `score_large − score_small`.
    pub gain: f64,
    /// 1-based line in its file.
    pub line: usize,
}

impl Example {
    /// The head's regression targets: `[gain]`, `[score_small]` or `[gain, score_small]`.
    pub fn targets(&self, head: HeadKind) -> Vec<f64> {
        match head {
            HeadKind::Gain => vec![self.gain],
            HeadKind::Quality => vec![self.score_small],
            HeadKind::Both => vec![self.gain, self.score_small],
        }
    }
}

/// Turns `(src, src_lang, tgt_lang)` into prompt token ids; the error is a message.
pub type Encoder<'a> = dyn FnMut(&str, &str, &str) -> std::result::Result<Vec<u32>, String> + 'a;

/// Reads a JSONL file of records. Blank lines are skipped; any bad record is an error naming
/// the file and line (missing or non-finite scores, a `gain` that disagrees, no prompt, a token
/// id outside the vocabulary). An empty file is an error.
pub fn read_examples(path: &Path, vocab: usize, encode: &mut Encoder<'_>) -> Result<Vec<Example>> {
    let file = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|e| TrainError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line_no = i + 1;
        let text = line.map_err(|e| TrainError::io(path, e))?;
        if text.trim().is_empty() {
            continue;
        }
        let bad =
            |message: String| TrainError::Record { file: file.clone(), line: line_no, message };
        let record = Record::from_json_line(&text, line_no).map_err(|e| bad(strip_line(e)))?;
        let ids = match record.extra.get("input_ids") {
            Some(v) => parse_ids(v).map_err(bad)?,
            None => {
                let (Some(src), Some(sl), Some(tl)) =
                    (&record.src, &record.src_lang, &record.tgt_lang)
                else {
                    return Err(bad("needs 'input_ids' or 'src', 'src_lang', 'tgt_lang'".into()));
                };
                encode(src, sl, tl).map_err(bad)?
            }
        };
        if ids.is_empty() {
            return Err(bad("empty prompt".into()));
        }
        if let Some(id) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(bad(format!("token id {id} out of range for vocab_size {vocab}")));
        }
        out.push(Example {
            ids,
            score_small: record.score_small,
            gain: record.gain,
            line: line_no,
        });
    }
    if out.is_empty() {
        return Err(TrainError::Data { file, message: "no records (empty training set)".into() });
    }
    Ok(out)
}

/// The record error's text without its own "line N:" prefix (we add file:line).
fn strip_line(e: routelmt_route::RecordError) -> String {
    let s = e.to_string();
    match s.split_once(": ") {
        Some((head, rest)) if head.starts_with("line ") => rest.to_string(),
        _ => s,
    }
}

fn parse_ids(v: &Value) -> std::result::Result<Vec<u32>, String> {
    let arr = v.as_array().ok_or("field 'input_ids' must be an array of token ids")?;
    arr.iter()
        .map(|x| {
            x.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("field 'input_ids' holds {x}, not a token id"))
        })
        .collect()
}

/// A digest of examples (ids and labels), to tie a checkpoint to its data.
pub fn digest(examples: &[Example]) -> String {
    let mut h = Sha256::new();
    for e in examples {
        h.update((e.ids.len() as u64).to_le_bytes());
        for id in &e.ids {
            h.update(id.to_le_bytes());
        }
        h.update(e.score_small.to_le_bytes());
        h.update(e.gain.to_le_bytes());
    }
    h.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect()
}
