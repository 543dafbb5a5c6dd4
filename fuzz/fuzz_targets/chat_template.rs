//! Chat templates from a model: the bytes as a `tokenizer_config.json` (template, specials) and
//! as a bare template source, each rendered for one user message.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use routelmt_model::text::chat::{ChatTemplate, from_tokenizer_config};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(t)) = from_tokenizer_config(Some((data, "tokenizer_config.json")), None) {
        let _ = t.render_user("Translate the following text from English into German.\n\nHi.");
    }
    if let Ok(source) = std::str::from_utf8(data) {
        let specials = BTreeMap::from([("eos_token".to_string(), "<|im_end|>".to_string())]);
        if let Ok(t) = ChatTemplate::new(source, specials, "chat_template.jinja") {
            let _ = t.render_user("Hello");
        }
    }
});
