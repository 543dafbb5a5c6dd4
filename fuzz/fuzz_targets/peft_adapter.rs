//! A PEFT LoRA adapter for the tiny Llama base: the first byte picks which file is fuzzed
//! (even: `adapter_config.json`, odd: `adapter_model.safetensors`); the other is the fixture's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use routelmt_model::PeftAdapter;

const CONFIG: &[u8] =
    include_bytes!("../../tests/fixtures/models/tiny-llama-lora/adapter_config.json");
const WEIGHTS: &[u8] =
    include_bytes!("../../tests/fixtures/models/tiny-llama-lora/adapter_model.safetensors");

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let base = routelmt_fuzz::base_config();
    let (config, weights) = if pick % 2 == 0 { (rest, WEIGHTS) } else { (CONFIG, rest) };
    if let Ok(a) = PeftAdapter::from_peft(
        config,
        "adapter_config.json",
        weights,
        "adapter_model.safetensors",
        &base,
    ) {
        let _ = a.fingerprint();
    }
});
