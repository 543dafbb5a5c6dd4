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
        // The tokenizers crate panics (`expect`) on some malformed files: JSON that breaks
        // inside a decoder (bad syntax, a string that is not UTF-8), a corrupt precompiled
        // normalizer (found by the `tokenizer` fuzz target). Those are checked here first, in
        // every build; natively a panic that remains is caught and reported as an error.
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| ModelError::config(origin, format!("not valid JSON: {e}")))?;
        if let Some(normalizer) = value.get("normalizer") {
            check_precompiled(normalizer)
                .map_err(|e| ModelError::config(origin, format!("normalizer: {e}")))?;
        }
        drop(value);
        let load = || tokenizers::Tokenizer::from_bytes(bytes);
        #[cfg(not(target_arch = "wasm32"))]
        let loaded = std::panic::catch_unwind(load).map_err(|panic| {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            ModelError::config(origin, format!("the tokenizers library cannot read it: {why}"))
        })?;
        #[cfg(target_arch = "wasm32")]
        let loaded = load();
        let inner = loaded.map_err(|source| ModelError::Tokenizer {
            what: format!("{origin}: cannot load"),
            source,
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

/// Errors when `v` holds a `Precompiled` normalizer (at any depth of a `Sequence`) whose
/// charsmap the tokenizers crate would panic on.
fn check_precompiled(v: &serde_json::Value) -> std::result::Result<(), String> {
    match v {
        serde_json::Value::Object(o) => {
            if o.get("type").and_then(serde_json::Value::as_str) == Some("Precompiled") {
                serde_json::from_value::<tokenizers::normalizers::Precompiled>(v.clone())
                    .map_err(|e| format!("precompiled charsmap is not valid: {e}"))?;
            }
            o.values().try_for_each(check_precompiled)
        }
        serde_json::Value::Array(a) => a.iter().try_for_each(check_precompiled),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A word-level tokenizer.json with `normalizer` and `decoder` filled in.
    fn json(normalizer: &str, decoder: &str) -> String {
        format!(
            r#"{{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": {normalizer}, "pre_tokenizer": {{"type": "Whitespace"}},
            "post_processor": null, "decoder": {decoder},
            "model": {{"type": "WordLevel", "vocab": {{"a": 0, "b": 1, "[UNK]": 2}},
            "unk_token": "[UNK]"}}}}"#
        )
    }

    #[test]
    fn files_the_tokenizers_crate_panics_on_are_errors_naming_the_file() {
        let ok = Tokenizer::from_bytes(json("null", "null").as_bytes(), "t.json").unwrap();
        assert_eq!(ok.encode("a b c").unwrap(), [0, 1, 2]);
        // Broken JSON syntax inside the decoder (tokenizers' `expect("Helper")`), and a
        // precompiled normalizer whose charsmap is not base64 (`expect("Precompiled")`).
        let cases = [
            (json("null", r#"{"type": "ByteLevel", "x": }"#), "not valid JSON"),
            (
                json(r#"{"type": "Precompiled", "precompiled_charsmap": "!!"}"#, "null"),
                "normalizer: precompiled charsmap is not valid",
            ),
            (
                json(
                    r#"{"type": "Sequence", "normalizers": [{"type": "NFC"},
                    {"type": "Precompiled", "precompiled_charsmap": "AAAA"}]}"#,
                    "null",
                ),
                "normalizer: precompiled charsmap is not valid",
            ),
        ];
        let mut bytes =
            json("null", r#"{"type": "Replace", "pattern": {"String": "x"}, "content": "AB"}"#)
                .into_bytes();
        let at = bytes.windows(2).position(|w| w == b"AB").unwrap();
        bytes[at] = 0xFF; // a string that is not UTF-8, inside the decoder
        let e = Tokenizer::from_bytes(&bytes, "t.json").err().expect("an error").to_string();
        assert!(e.starts_with("t.json") && e.contains("not valid JSON"), "{e}");
        for (text, want) in cases {
            let e = Tokenizer::from_bytes(text.as_bytes(), "t.json").err().expect("an error");
            let e = e.to_string();
            assert!(e.starts_with("t.json") && e.contains(want) && !e.contains('\n'), "{e}");
        }
    }
}
