//! A router folder for the tiny Llama base: the first byte picks which file is fuzzed (even:
//! `router.json`, odd: `head.safetensors`); the other is the valid one in `fixed/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use routelmt_fuzz::{HEAD, ROUTER_JSON};
use routelmt_model::{Named, Router, RouterConfig, RouterFiles};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let base = routelmt_fuzz::base_config();
    let (json, head) = if pick % 2 == 0 { (rest, HEAD) } else { (ROUTER_JSON, rest) };
    if let Ok(c) = RouterConfig::from_json(json, "router.json") {
        let _ = c.check_base(&base, "router.json");
    }
    let files = RouterFiles::new(
        Named::new("router.json", json),
        Named::new("head.safetensors", head),
        None,
        None,
    );
    if let Ok(files) = files {
        let _ = Router::from_files(files, &base, &routelmt_fuzz::device());
    }
});
