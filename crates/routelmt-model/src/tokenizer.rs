//! Qwen3 byte-level BPE through the `tokenizers` crate, from a folder's `tokenizer.json` bytes.
//!
//! The chat-templated prompt is encoded with `add_special_tokens = false`, exactly as
//! transformers' `apply_chat_template(..., tokenize=True)` does: special-token strings in the
//! text (`<|im_start|>`, `<|im_end|>`) become their ids, everything else is byte-level BPE.

use crate::error::{ModelError, Result};
use crate::prompt::{self, PromptStyle};

/// A loaded tokenizer.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl Tokenizer {
    /// Loads `tokenizer.json` from its bytes; `origin` names the file in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|source| {
            ModelError::Tokenizer { what: format!("{origin}: cannot load"), source }
        })?;
        Ok(Self { inner })
    }

    /// Token ids of an already-built prompt string.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|source| ModelError::Tokenizer { what: "cannot encode".into(), source })?;
        Ok(enc.get_ids().to_vec())
    }

    /// The chat-templated LMT prompt and its token ids.
    pub fn encode_request(
        &self,
        text: &str,
        src_lang: &str,
        tgt_lang: &str,
        style: PromptStyle,
    ) -> Result<(String, Vec<u32>)> {
        let p = prompt::build(text, src_lang, tgt_lang, style)?;
        let ids = self.encode(&p)?;
        Ok((p, ids))
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}
