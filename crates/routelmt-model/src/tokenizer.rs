//! The model's tokenizer through the `tokenizers` crate: from a folder's `tokenizer.json`
//! bytes, or built from a GGUF file's metadata, plus the model's chat template.
//!
//! The chat-templated prompt is encoded with `add_special_tokens = false`, exactly as
//! transformers' `apply_chat_template(..., tokenize=True)` does: special-token strings in the
//! text (`<|im_start|>`, `<|im_end|>`) become their ids, everything else is byte-level BPE.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::chat::{ChatMode, ChatTemplate};
use crate::error::{ModelError, Result};
use crate::gguf::{self, GgufFile};
use crate::prompt::{self, PromptStyle};

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

    /// The tokenizer a GGUF file describes (`tokenizer.ggml.*`), built as transformers builds
    /// it from the same file, with the file's chat template.
    pub fn from_gguf(file: &GgufFile<'_>) -> Result<Self> {
        let (json, specials) = gguf_tokenizer_json(file)?;
        let mut tok = Self::from_bytes(json.to_string().as_bytes(), file.file)?;
        if let Some(source) = file.chat_template() {
            let origin = format!("{} (tokenizer.chat_template)", file.file);
            tok.chat = Some(ChatTemplate::new(source, specials, &origin)?);
        }
        Ok(tok)
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

/// GPT-2's byte-to-unicode table: printable bytes stand for themselves, the rest are shifted
/// to 256 and up, in order.
fn byte_spelling() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, 33..=126 | 161..=172 | 174..=255);
        table[b as usize] = if printable {
            char::from(b)
        } else {
            next += 1;
            char::from_u32(next - 1).expect("below the surrogates")
        };
    }
    table
}

/// The split regex transformers puts before the byte-level step for a `tokenizer.ggml.pre`,
/// if any (otherwise GPT-2's own regex inside `ByteLevel`).
fn pre_split(pre: &str) -> Option<&'static str> {
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "smaug-bpe" | "dbrx" => Some(LLAMA3),
        "qwen2" | "deepseek-r1-qwen" | "megrez" => Some(QWEN2),
        _ => None,
    }
}

/// A `tokenizer.json` for a GGUF's byte-level BPE vocabulary (`tokenizer.ggml.model` =
/// `gpt2`), as transformers 5 builds it from the file: BPE over the tokens and merges; control
/// tokens (type 3) added as special and user-defined ones (type 4) as plain added tokens, both
/// matched whole; `ByteLevel` pre-tokenization, preceded by the split regex of the file's
/// `tokenizer.ggml.pre` where transformers knows it; a BOS prepended only when
/// `tokenizer.ggml.add_bos_token` is true. Also returns the special-token strings for the chat
/// template. SentencePiece (`llama`) vocabularies are not supported.
fn gguf_tokenizer_json(file: &GgufFile<'_>) -> Result<(Value, BTreeMap<String, String>)> {
    let key_err = |k: &str, m: &str| ModelError::config(file.file, format!("metadata '{k}' {m}"));
    let model = file.get("tokenizer.ggml.model").and_then(gguf::Value::as_str);
    match model {
        Some("gpt2") => {}
        Some(other) => {
            return Err(key_err(
                "tokenizer.ggml.model",
                &format!("is '{other}'; only byte-level BPE ('gpt2') vocabularies are supported"),
            ));
        }
        None => return Err(key_err("tokenizer.ggml.model", "is missing")),
    }
    let strings = |k: &str| -> Result<Vec<&str>> {
        let arr =
            file.get(k).and_then(gguf::Value::as_array).ok_or_else(|| key_err(k, "is missing"))?;
        arr.iter().map(|v| v.as_str().ok_or_else(|| key_err(k, "holds a non-string"))).collect()
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?;
    let types: Vec<u64> =
        match file.get("tokenizer.ggml.token_type").and_then(gguf::Value::as_array) {
            Some(a) => a.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
            None => vec![1; tokens.len()],
        };
    let spelling = byte_spelling();
    let alphabet: std::collections::HashSet<char> = spelling.iter().copied().collect();
    let in_alphabet = |t: &str| t.chars().all(|c| alphabet.contains(&c));
    let mut vocab = serde_json::Map::new();
    for (id, t) in tokens.iter().enumerate() {
        let spelled = if in_alphabet(t) {
            (*t).to_string()
        } else {
            t.bytes().map(|b| spelling[b as usize]).collect()
        };
        vocab.insert(spelled, json!(id));
    }
    let mut added = Vec::new();
    for (id, (t, ty)) in tokens.iter().zip(&types).enumerate() {
        let special = match ty {
            3 if in_alphabet(t) => true,
            4 => false,
            _ => continue,
        };
        added.push(json!({"id": id, "content": t, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": special}));
    }
    let pre = file.get("tokenizer.ggml.pre").and_then(gguf::Value::as_str).unwrap_or("default");
    let pre_tokenizer = match pre_split(pre) {
        Some(regex) => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}),
        None => json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
            "use_regex": true}),
    };
    let id_of = |k: &str| file.get(k).and_then(gguf::Value::as_u64).map(|v| v as usize);
    let mut specials = BTreeMap::new();
    for (name, key) in [
        ("bos_token", "tokenizer.ggml.bos_token_id"),
        ("eos_token", "tokenizer.ggml.eos_token_id"),
        ("pad_token", "tokenizer.ggml.padding_token_id"),
        ("unk_token", "tokenizer.ggml.unknown_token_id"),
    ] {
        if let Some(t) = id_of(key).and_then(|id| tokens.get(id)) {
            specials.insert(name.to_string(), (*t).to_string());
        }
    }
    let add_bos =
        file.get("tokenizer.ggml.add_bos_token").and_then(gguf::Value::as_bool) == Some(true);
    let post = match (add_bos, specials.get("bos_token"), id_of("tokenizer.ggml.bos_token_id")) {
        (true, Some(bos), Some(id)) => json!({"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos.clone(): {"id": bos, "ids": [id], "tokens": [bos]}}}),
        _ => Value::Null,
    };
    let json = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": pre_tokenizer, "post_processor": post,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": false, "vocab": vocab, "merges": merges},
    });
    Ok((json, specials))
}
