//! What the fuzz targets share: the fixed inputs a target needs besides the fuzzed bytes (a
//! base model's config, a small tokenizer with a chat template, a router head), each built from
//! the repository's fixtures or the committed seeds.

use std::collections::BTreeMap;

use burn::tensor::Device;
use routelmt_model::text::chat::ChatTemplate;
use routelmt_model::{ModelConfig, Tokenizer};

/// The base model the adapter and router targets check against (the tiny Llama fixture).
pub const BASE_CONFIG: &[u8] = include_bytes!("../../tests/fixtures/models/tiny-llama/config.json");

/// A byte-level BPE tokenizer.json with 256 byte tokens and a few merges (`seeds/make_seeds.py`).
pub const TOKENIZER: &[u8] = include_bytes!("../fixed/tokenizer.json");

/// A ChatML template, as Qwen models ship it (system part dropped).
pub const TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// The base model's config.
pub fn base_config() -> ModelConfig {
    ModelConfig::from_json(BASE_CONFIG, "config.json").expect("the tiny-llama fixture's config")
}

/// The small tokenizer with the ChatML template.
pub fn tokenizer() -> Tokenizer {
    let chat = ChatTemplate::new(TEMPLATE, BTreeMap::new(), "template").expect("template");
    Tokenizer::from_bytes(TOKENIZER, "tokenizer.json")
        .expect("the seed tokenizer")
        .with_chat(Some(chat))
}

/// The CPU device the router target builds tensors on.
pub fn device() -> Device {
    Device::flex()
}

/// A router for the base model without LoRA (`make_seeds.py` says how it was written).
pub const ROUTER_JSON: &[u8] = include_bytes!("../fixed/router.json");
/// Its head.
pub const HEAD: &[u8] = include_bytes!("../fixed/head.safetensors");

/// For targets that load a tokenizer: `Tokenizer::from_bytes` catches the panics of the
/// tokenizers crate and returns them as errors, but libFuzzer's panic hook aborts on any panic,
/// caught or not. This hook stays silent instead; a panic nobody catches still aborts (the fuzz
/// harness turns it into a crash), so only caught ones pass.
pub fn allow_caught_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}
