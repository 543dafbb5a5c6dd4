//! A GGUF file as a checkpoint: the decoder config from its metadata, its tensor index, the
//! tokenizer and chat template it carries, and a prompt rendered and encoded with them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use routelmt_model::checkpoint::GgufCheckpoint;
use routelmt_model::{Named, PromptStyle};

fuzz_target!(|data: &[u8]| {
    routelmt_fuzz::allow_caught_panics();
    let Ok(c) = GgufCheckpoint::parse(Named::new("fuzz.gguf", data)) else { return };
    let _ = c.index();
    let _ = c.config.fingerprint();
    if let Ok(tok) = c.tokenizer() {
        let _ = tok.encode_request("Hello, world.", "en", "de", PromptStyle::default());
    }
});
