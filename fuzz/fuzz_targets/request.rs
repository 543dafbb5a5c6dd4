//! One routing request as the front doors get it: a JSONL/browser record prepared against the
//! tokenizer, and a gateway chat body (the routed text found, its length, its token ids).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use routelmt_model::text::request::prepare_json;
use routelmt_model::{PrepareOptions, PromptStyle, Tokenizer};
use routelmt_serve::prompt::routed_text;

fuzz_target!(|data: &[u8]| {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    let tok = TOKENIZER.get_or_init(routelmt_fuzz::tokenizer);
    let Ok(text) = std::str::from_utf8(data) else { return };
    let opts = PrepareOptions {
        style: PromptStyle::default(),
        allow_ids: true,
        vocab: Some(tok.vocab_size()),
    };
    let _ = prepare_json(text, tok, opts);
    if let Ok(body) = serde_json::from_str::<serde_json::Value>(text) {
        if let Ok(target) = routed_text(&body) {
            if target.chars() <= 4096 {
                let _ = target.token_ids(tok, PromptStyle::default());
            }
        }
    }
});
