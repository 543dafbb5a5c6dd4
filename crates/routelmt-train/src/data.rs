//! Training records: the routing schema (`score_small`, `score_large`, optional `gain` that
//! must agree), plus either `input_ids` (used verbatim) or `src`/`src_lang`/`tgt_lang`
//! (prompt built and tokenized by the caller's encoder).

use std::io::BufReader;
use std::path::Path;

use routelmt_model::HeadKind;
use routelmt_route::{JsonLines, Record, RecordError};
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
    let at = |e: RecordError| TrainError::Record {
        file: file.clone(),
        line: e.line(),
        message: e.message(),
    };
    let mut out = Vec::new();
    for item in JsonLines::new(BufReader::new(f)) {
        let (line_no, text) = item.map_err(at)?;
        let bad =
            |message: String| TrainError::Record { file: file.clone(), line: line_no, message };
        let record = Record::from_json_line(&text, line_no).map_err(at)?;
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
