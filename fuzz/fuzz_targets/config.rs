//! `config.json` of a Hugging Face folder: parsed, checked, and the sizes derived from it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use routelmt_model::ModelConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(c) = ModelConfig::from_json(data, "config.json") else { return };
    let _ = c.non_embedding_params();
    let _ = c.embedding_params();
    let _ = c.fingerprint();
    for name in ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] {
        let _ = c.projection_dims(name);
    }
});
