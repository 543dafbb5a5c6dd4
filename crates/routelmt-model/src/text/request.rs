//! One routing request as every front door receives it (a JSONL line in the CLI, a record in
//! the browser package, a chat request in the gateway): an `id` and either `input_ids` (used
//! verbatim) or `src`, `src_lang`, `tgt_lang` (the LMT prompt is built and tokenized, see
//! `docs/method.md`). Preparing a request checks it against the model's vocabulary, so a bad
//! record is rejected before it reaches the device. No I/O: compiles for wasm32.

use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

use super::prompt::PromptStyle;
use super::tokenizer::Tokenizer;
use crate::error::ModelError;

/// Why a request cannot be prepared. The message names the field; front doors add where the
/// request came from (file and line, record index).
#[derive(Debug, Error)]
pub enum RequestError {
    /// The text is not a JSON object of the request schema.
    #[error("invalid JSON: {0}")]
    Json(serde_json::Error),
    /// A required field is absent (or `id` is null).
    #[error("missing field '{0}'")]
    Missing(&'static str),
    /// Neither token ids nor a source text.
    #[error("needs 'input_ids' or 'src', 'src_lang', 'tgt_lang'")]
    NoInput,
    /// `input_ids` is an empty list.
    #[error("empty 'input_ids'")]
    Empty,
    /// A token id at or above the vocabulary size.
    #[error("token id {id} out of range for vocab_size {vocab}")]
    OutOfVocab {
        /// The offending id.
        id: u32,
        /// The model's vocabulary size.
        vocab: usize,
    },
    /// The tokenizer could not be loaded, or the prompt could not be built (unknown language).
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// The request schema (unknown fields are kept by the front doors, ignored here).
#[derive(Debug, Deserialize)]
struct Wire {
    id: Option<Value>,
    input_ids: Option<Vec<u32>>,
    src: Option<String>,
    src_lang: Option<String>,
    tgt_lang: Option<String>,
}

/// A request ready for the prefill.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// The record's id, as given.
    pub id: Value,
    /// The chat-templated prompt, when built from text.
    pub prompt: Option<String>,
    /// Token ids of the prompt.
    pub ids: Vec<u32>,
}

/// How requests are prepared.
#[derive(Debug, Clone, Copy)]
pub struct PrepareOptions {
    /// Prompt revision for requests given as text.
    pub style: PromptStyle,
    /// Whether `input_ids` may stand in for the text (`tokenize` needs text).
    pub allow_ids: bool,
    /// The model's vocabulary size, to reject out-of-range ids (`None`: no check).
    pub vocab: Option<usize>,
}

/// Where the tokenizer comes from: a loaded one, or one loaded on first use (a file of only
/// `input_ids` never needs a tokenizer).
pub trait TokenizerSource {
    /// The tokenizer, or why it cannot be had.
    fn tokenizer(&self) -> Result<&Tokenizer, ModelError>;
}

impl TokenizerSource for Tokenizer {
    fn tokenizer(&self) -> Result<&Tokenizer, ModelError> {
        Ok(self)
    }
}

/// Parses one request from JSON text and prepares it.
pub fn prepare_json(
    text: &str,
    tokenizer: &dyn TokenizerSource,
    opts: PrepareOptions,
) -> Result<Prepared, RequestError> {
    let wire: Wire = serde_json::from_str(text).map_err(RequestError::Json)?;
    prepare(wire, tokenizer, opts)
}

/// Prepares a request already parsed into a JSON value (the browser's records).
pub fn prepare_value(
    value: Value,
    tokenizer: &dyn TokenizerSource,
    opts: PrepareOptions,
) -> Result<Prepared, RequestError> {
    let wire: Wire = serde_json::from_value(value).map_err(RequestError::Json)?;
    prepare(wire, tokenizer, opts)
}

fn prepare(
    req: Wire,
    tokenizer: &dyn TokenizerSource,
    opts: PrepareOptions,
) -> Result<Prepared, RequestError> {
    let id = req.id.filter(|v| !v.is_null()).ok_or(RequestError::Missing("id"))?;
    let (prompt, ids) = match (req.input_ids, req.src) {
        (Some(ids), _) if opts.allow_ids => (None, ids),
        (_, Some(src)) => {
            let src_lang = req.src_lang.ok_or(RequestError::Missing("src_lang"))?;
            let tgt_lang = req.tgt_lang.ok_or(RequestError::Missing("tgt_lang"))?;
            let tok = tokenizer.tokenizer()?;
            let (p, ids) = tok.encode_request(&src, &src_lang, &tgt_lang, opts.style)?;
            (Some(p), ids)
        }
        _ if opts.allow_ids => return Err(RequestError::NoInput),
        _ => return Err(RequestError::Missing("src")),
    };
    if ids.is_empty() {
        return Err(RequestError::Empty);
    }
    if let Some(vocab) = opts.vocab
        && let Some(&id) = ids.iter().find(|&&i| i as usize >= vocab)
    {
        return Err(RequestError::OutOfVocab { id, vocab });
    }
    Ok(Prepared { id, prompt, ids })
}
