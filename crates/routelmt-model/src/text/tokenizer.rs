//! The model's tokenizer through the `tokenizers` crate, from `tokenizer.json` bytes (a
//! folder's, or the one [`crate::formats::gguf_hf`] builds from a GGUF file's metadata), plus
//! the model's chat template.
//!
//! The chat-templated prompt is encoded with `add_special_tokens = false`, exactly as
//! transformers' `apply_chat_template(..., tokenize=True)` does: special-token strings in the
//! text (`<|im_start|>`, `<|im_end|>`) become their ids, everything else is byte-level BPE.

use super::chat::{self, ChatMode, ChatTemplate};
use super::prompt::{self, PromptStyle};
use crate::error::{ModelError, Result};
use crate::formats::Named;

/// A loaded tokenizer and, when the model has one, its chat template.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    chat: Option<ChatTemplate>,
    mode: ChatMode,
}

impl Tokenizer {
    /// Loads `tokenizer.json` from its bytes; `origin` names the file in errors. No chat
    /// template until [`Self::with_chat`].
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|source| {
            ModelError::Tokenizer { what: format!("{origin}: cannot load"), source }
        })?;
        Ok(Self { inner, chat: None, mode: ChatMode::Auto })
    }

    /// The tokenizer of a model folder from its files' bytes: `tokenizer.json` with the chat
    /// template of the `tokenizer_config.json` or `chat_template.jinja` beside it, if any (the
    /// native door and the browser both read folders through this).
    pub fn from_folder(
        json: Named<'_>,
        config: Option<Named<'_>>,
        jinja: Option<Named<'_>>,
    ) -> Result<Self> {
        let tok = Self::from_bytes(json.bytes, json.name)?;
        let jinja = match jinja {
            Some(j) => Some((
                std::str::from_utf8(j.bytes)
                    .map_err(|_| ModelError::config(j.name, "not UTF-8"))?,
                j.name,
            )),
            None => None,
        };
        let template = chat::from_tokenizer_config(config.map(|c| (c.bytes, c.name)), jinja)?;
        Ok(tok.with_chat(template))
    }

    /// Sets the chat template (replacing any).
    pub fn with_chat(mut self, chat: Option<ChatTemplate>) -> Self {
        self.chat = chat;
        self
    }

    /// Sets whether the chat template is used.
    pub fn with_mode(mut self, mode: ChatMode) -> Self {
        self.mode = mode;
        self
    }

    /// The chat template in use, if any.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        match self.mode {
            ChatMode::Auto => self.chat.as_ref(),
            ChatMode::None => None,
        }
    }

    /// Token ids of an already-built prompt string.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|source| ModelError::Tokenizer { what: "cannot encode".into(), source })?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text of token ids (special tokens kept).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|source| ModelError::Tokenizer { what: "cannot decode".into(), source })
    }

    /// The LMT instruction in the model's chat template (or bare, without one).
    pub fn prompt(
        &self,
        text: &str,
        src_lang: &str,
        tgt_lang: &str,
        style: PromptStyle,
    ) -> Result<String> {
        let msg = prompt::user_message(text, src_lang, tgt_lang, style)?;
        match self.chat_template() {
            Some(t) => t.render_user(&msg),
            None => Ok(msg),
        }
    }

    /// The chat-templated LMT prompt and its token ids.
    pub fn encode_request(
        &self,
        text: &str,
        src_lang: &str,
        tgt_lang: &str,
        style: PromptStyle,
    ) -> Result<(String, Vec<u32>)> {
        let p = self.prompt(text, src_lang, tgt_lang, style)?;
        let ids = self.encode(&p)?;
        Ok((p, ids))
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}
