//! `tokenizer.json`: loaded (the tokenizers crate behind our error type), then used.
#![no_main]

use libfuzzer_sys::fuzz_target;
use routelmt_model::Tokenizer;

fuzz_target!(|data: &[u8]| {
    routelmt_fuzz::allow_caught_panics();
    let Ok(tok) = Tokenizer::from_bytes(data, "tokenizer.json") else { return };
    let _ = tok.vocab_size();
    if let Ok(ids) = tok.encode("Hello, world. Привет, 世界!") {
        let _ = tok.decode(&ids);
    }
});
