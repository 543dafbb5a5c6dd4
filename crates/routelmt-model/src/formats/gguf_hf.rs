//! A GGUF file seen as a Hugging Face checkpoint, for the llama, qwen2 and qwen3
//! architectures: the decoder config from the metadata (family defaults from
//! [`ModelConfig`]), every tensor under its Hugging Face name with llama.cpp's q/k row
//! permutation marked, and the `tokenizer.json` that transformers builds from the file's
//! `tokenizer.ggml.*` keys, with the chat template.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::dtype::Stored;
use super::gguf::{GgufFile, Value as GgufValue};
use super::{Entry, Layout, Source, source};
use crate::config::{Family, ModelConfig};
use crate::error::{ModelError, Result};

/// A size from the file as usize, `usize::MAX` when it does not fit (refused by the checks).
fn saturate(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// The decoder config from the metadata (llama, qwen2 and qwen3 architectures).
pub fn config(g: &GgufFile<'_>) -> Result<ModelConfig> {
    let arch = g.architecture()?;
    let family = Family::from_name(arch).ok_or_else(|| {
        ModelError::config(
            g.file,
            format!("metadata 'general.architecture' is '{arch}'; supported: llama, qwen2, qwen3"),
        )
    })?;
    let key = |k: &str| format!("{arch}.{k}");
    let num = |k: &str| -> Result<usize> {
        let k = key(k);
        // A value beyond usize (wasm32) becomes usize::MAX, which the config check refuses.
        g.get(&k).and_then(GgufValue::as_u64).map(saturate).ok_or_else(|| {
            ModelError::config(g.file, format!("metadata key '{k}' is missing or not an integer"))
        })
    };
    let opt_num = |k: &str| g.get(&key(k)).and_then(GgufValue::as_u64).map(saturate);
    if let Some(kind) = g.get(&key("rope.scaling.type")).and_then(GgufValue::as_str)
        && kind != "none"
    {
        return Err(ModelError::config(
            g.file,
            format!(
                "metadata '{}' is '{kind}'; RoPE scaling is not supported",
                key("rope.scaling.type")
            ),
        ));
    }
    if g.infos.iter().any(|t| t.name == "rope_freqs.weight") {
        return Err(ModelError::config(
            g.file,
            "tensor 'rope_freqs.weight' (Llama 3 RoPE scaling) is not supported in GGUF files",
        ));
    }
    let hidden = num("embedding_length")?;
    let heads = num("attention.head_count")?;
    let embd = g
        .infos
        .iter()
        .find(|t| t.name == "token_embd.weight")
        .ok_or_else(|| ModelError::weights(g.file, "missing tensor 'token_embd.weight'"))?;
    let vocab = embd.ne.last().copied().map_or(0, saturate);
    let eps = g
        .get(&key("attention.layer_norm_rms_epsilon"))
        .and_then(GgufValue::as_f64)
        .ok_or_else(|| {
            ModelError::config(
                g.file,
                format!("metadata key '{}' is missing", key("attention.layer_norm_rms_epsilon")),
            )
        })?;
    let theta = g.get(&key("rope.freq_base")).and_then(GgufValue::as_f64);
    let mut config = ModelConfig {
        family,
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: num("feed_forward_length")?,
        num_hidden_layers: num("block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: opt_num("attention.head_count_kv").unwrap_or(0),
        head_dim: opt_num("attention.key_length").unwrap_or(0),
        rms_norm_eps: eps,
        rope_theta: theta,
        rope_llama3: None,
        attention_bias: family == Family::Llama
            && g.infos.iter().any(|t| t.name == "blk.0.attn_output.bias"),
        tie_word_embeddings: !g.infos.iter().any(|t| t.name == "output.weight"),
        dtype: None,
        max_position_embeddings: opt_num("context_length"),
    };
    config.fill_defaults();
    config.check().map_err(|m| ModelError::config(g.file, m))?;
    Ok(config)
}

/// Every tensor's [`Entry`] under its Hugging Face name (absolute byte ranges in the file),
/// with llama.cpp's q/k row permutation marked for the `llama` architecture. A tensor of a type
/// we do not decode is an error naming it and the type; a name with no Hugging Face
/// counterpart is kept under its GGUF name (and reported unused). Needs only the file's head.
pub fn entries(g: &GgufFile<'_>, config: &ModelConfig) -> Result<Vec<(String, Entry)>> {
    let llama = config.family == Family::Llama;
    let mut out = Vec::with_capacity(g.infos.len());
    for t in &g.infos {
        let unsupported = |ty: &str| {
            ModelError::weights(
                g.file,
                format!(
                    "tensor '{}' has type {ty}; supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, \
                     Q4_K, Q5_K, Q6_K",
                    t.name
                ),
            )
        };
        let dtype = Stored::from_ggml(t.ggml_type).map_err(|ty| unsupported(&ty))?;
        let range = g.tensor_range(t)?.ok_or_else(|| unsupported(dtype.name()))?;
        let name = hf_name(&t.name).unwrap_or_else(|| t.name.clone());
        let layout = match (llama, name.rsplit('.').nth(1)) {
            (true, Some("q_proj")) => Layout::RopeInterleaved { heads: config.num_attention_heads },
            (true, Some("k_proj")) => Layout::RopeInterleaved { heads: config.num_key_value_heads },
            _ => Layout::Plain,
        };
        let shape = t.shape();
        out.push((name, Entry { dtype, shape, start: range.start, end: range.end, layout }));
    }
    Ok(out)
}

/// Every tensor under its Hugging Face name (see [`entries`]), borrowed from a file parsed
/// whole.
pub fn tensors<'a>(g: &GgufFile<'a>, config: &ModelConfig) -> Result<Vec<(String, Source<'a>)>> {
    entries(g, config)?
        .into_iter()
        .map(|(name, e)| {
            let data = g.bytes(e.start..e.end)?;
            Ok((name, source(g.file, e, data)))
        })
        .collect()
}

/// `tokenizer.chat_template`, if the file has one.
pub fn chat_template<'a>(g: &'a GgufFile<'_>) -> Option<&'a str> {
    g.get("tokenizer.chat_template").and_then(GgufValue::as_str)
}

/// The Hugging Face name of a llama.cpp tensor name, for the tensors the decoder uses.
pub fn hf_name(gguf: &str) -> Option<String> {
    let fixed = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, suffix) = rest.rsplit_once('.')?;
    let hf = match module {
        "attn_norm" => "input_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "ffn_norm" => "post_attention_layernorm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{suffix}"))
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
pub fn tokenizer_json(file: &GgufFile<'_>) -> Result<(Value, BTreeMap<String, String>)> {
    let key_err = |k: &str, m: &str| ModelError::config(file.file, format!("metadata '{k}' {m}"));
    let model = file.get("tokenizer.ggml.model").and_then(GgufValue::as_str);
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
            file.get(k).and_then(GgufValue::as_array).ok_or_else(|| key_err(k, "is missing"))?;
        arr.iter().map(|v| v.as_str().ok_or_else(|| key_err(k, "holds a non-string"))).collect()
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?;
    let types: Vec<u64> = match file.get("tokenizer.ggml.token_type").and_then(GgufValue::as_array)
    {
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
    let pre = file.get("tokenizer.ggml.pre").and_then(GgufValue::as_str).unwrap_or("default");
    let pre_tokenizer = match pre_split(pre) {
        Some(regex) => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}),
        None => json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
            "use_regex": true}),
    };
    let id_of = |k: &str| file.get(k).and_then(GgufValue::as_u64).map(|v| v as usize);
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
        file.get("tokenizer.ggml.add_bos_token").and_then(GgufValue::as_bool) == Some(true);
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
