//! `routelmt tokenize | features | info`: the small model's front door.

use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use routelmt_model::{ChatMode, LoadOptions, PrepareOptions, TokenizerSource, hf};
use serde_json::json;

use crate::args::{BatchOpt, DeviceOpt, ModelArgs, RecordsIo, StyleOpt};
use crate::io::{print_stdout, write_json_line};
use crate::requests::{LazyTokenizer, write_records};

/// Arguments of `routelmt tokenize`.
#[derive(Debug, Args)]
pub struct TokenizeArgs {
    /// Model (only its tokenizer is read).
    #[command(flatten)]
    pub model: ModelArgs,
    /// Input and output: {"id", "src", "src_lang", "tgt_lang"} -> {"id", "prompt", "input_ids"}.
    #[command(flatten)]
    pub io: RecordsIo,
    /// Prompt revision.
    #[command(flatten)]
    pub style: StyleOpt,
}

/// Arguments of `routelmt features`.
#[derive(Debug, Args)]
pub struct FeaturesArgs {
    /// Model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Input and output: requests -> {"id", "n_tokens", "hidden"} (+ "top_ids", "top_logits").
    #[command(flatten)]
    pub io: RecordsIo,
    /// hidden_states index: 0 = embeddings, num_hidden_layers = final (default).
    #[arg(long)]
    pub layer: Option<usize>,
    /// Also write the K most likely next tokens after the prompt ("top_ids", most likely
    /// first) and their logits ("top_logits"), from the LM head.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub logits: Option<u64>,
    /// Compute device.
    #[command(flatten)]
    pub device: DeviceOpt,
    /// Prompts per pass.
    #[command(flatten)]
    pub batch: BatchOpt,
    /// Prompt revision.
    #[command(flatten)]
    pub style: StyleOpt,
}

/// Arguments of `routelmt info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Model folder or .gguf file.
    #[arg(long, env = "ROUTELMT_MODEL")]
    pub model: std::path::PathBuf,
    /// Compute device the model is loaded on.
    #[command(flatten)]
    pub device: DeviceOpt,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `routelmt tokenize`.
pub fn tokenize(a: TokenizeArgs) -> Result<()> {
    let tok =
        LazyTokenizer::new(&a.model.model, &a.model.tokenizer, a.model.chat_mode(ChatMode::Auto));
    tok.tokenizer()?; // fail early on a bad tokenizer, before reading input
    let opts = PrepareOptions { style: a.style.prompt_style, allow_ids: false, vocab: None };
    let n = write_records(&a.io, 1, &tok, opts, |batch, w| {
        for (p, _) in batch {
            write_json_line(w, &json!({"id": p.id, "prompt": p.prompt, "input_ids": p.ids}))?;
        }
        Ok(())
    })?;
    eprintln!("tokenized {n} record(s) -> {}", a.io.output.display());
    Ok(())
}

/// `routelmt features`.
pub fn features(a: FeaturesArgs) -> Result<()> {
    let dir = &a.model.model;
    let config = hf::read_config(dir)?;
    let layer = a.layer.unwrap_or(config.num_hidden_layers);
    if layer > config.num_hidden_layers {
        bail!(
            "--layer {layer} out of range: 0 (embeddings) to {} (final)",
            config.num_hidden_layers
        );
    }
    let dev = a.device.select()?;
    let started = Instant::now();
    let weights = Some(a.model.weights.unwrap_or_default());
    let opts = LoadOptions { lm_head: a.logits.is_some(), weights };
    let (model, report) = hf::load_with(dir, opts, &dev.device)?;
    tracing::info!(?report, "loaded in {:.2?}", started.elapsed());
    let top_k = a.logits.map(|k| k as usize);
    let final_layer = config.num_hidden_layers;
    let tok = LazyTokenizer::new(dir, &a.model.tokenizer, a.model.chat_mode(ChatMode::Auto));
    let opts = PrepareOptions {
        style: a.style.prompt_style,
        allow_ids: true,
        vocab: Some(config.vocab_size),
    };
    let batch_size = a.batch.get();
    let n = write_records(&a.io, batch_size, &tok, opts, |batch, w| {
        let ids: Vec<Vec<u32>> = batch.iter().map(|(p, _)| p.ids.clone()).collect();
        let hidden = model.last_hidden(&ids, layer, batch_size)?.read()?;
        let top = match top_k {
            Some(k) if layer == final_layer => model.top_logits(&hidden, k)?,
            Some(k) => {
                model.top_logits(&model.last_hidden(&ids, final_layer, batch_size)?.read()?, k)?
            }
            None => Vec::new(),
        };
        let mut top = top.into_iter();
        for ((p, _), h) in batch.into_iter().zip(hidden) {
            let mut rec = json!({"id": p.id, "n_tokens": p.ids.len(), "hidden": h});
            if let Some((ids, logits)) = top.next() {
                rec["top_ids"] = json!(ids);
                rec["top_logits"] = json!(logits);
            }
            write_json_line(w, &rec)?;
        }
        Ok(())
    })?;
    eprintln!(
        "features: {n} record(s), layer {layer}, {:.2?} -> {}",
        started.elapsed(),
        a.io.output.display()
    );
    Ok(())
}

/// `routelmt info`.
pub fn info(a: InfoArgs) -> Result<()> {
    let config = hf::read_config(&a.model)?;
    let dev = a.device.select()?;
    let (model, report) = hf::load_folder(&a.model, &dev.device)?;
    drop(model);
    let c = &config;
    let format = if hf::is_gguf(&a.model) { "gguf" } else { "hf" };
    let template = hf::model_tokenizer(&a.model, None, ChatMode::Auto)
        .ok()
        .and_then(|t| t.chat_template().map(|t| t.origin().to_string()));
    let v = json!({
        "model": a.model.display().to_string(),
        "format": format,
        "architecture": c.family.name(),
        "chat_template": template.clone(),
        "layers": c.num_hidden_layers,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "attention_heads": c.num_attention_heads,
        "kv_heads": c.num_key_value_heads,
        "head_dim": c.head_dim,
        "vocab_size": c.vocab_size,
        "rope_theta": c.theta(),
        "tie_word_embeddings": c.tie_word_embeddings,
        "non_embedding_params": c.non_embedding_params(),
        "embedding_params": c.embedding_params(),
        "dtype_config": c.dtype,
        "dtype_on_disk": report.dtypes,
        "tensors_loaded": report.applied,
        "tensors_unused": report.unused,
        "fingerprint": c.fingerprint(),
        "device": dev.description,
        "device_reason": dev.reason,
    });
    if a.json {
        return print_stdout(&format!("{v}\n"));
    }
    println!("model          {}", a.model.display());
    println!(
        "architecture   {} ({format}): {} layers, hidden {}, {} query / {} kv heads, head_dim {}, mlp {}",
        c.family.name(),
        c.num_hidden_layers,
        c.hidden_size,
        c.num_attention_heads,
        c.num_key_value_heads,
        c.head_dim,
        c.intermediate_size
    );
    println!("vocab          {} (tied embeddings: {})", c.vocab_size, c.tie_word_embeddings);
    println!(
        "parameters     {:.2}M non-embedding + {:.2}M embedding",
        c.non_embedding_params() as f64 / 1e6,
        c.embedding_params() as f64 / 1e6
    );
    println!(
        "dtype on disk  {} (config says {})",
        report.dtypes.iter().cloned().collect::<Vec<_>>().join(", "),
        c.dtype.as_deref().unwrap_or("nothing")
    );
    println!(
        "tensors        {} loaded, {} unused {:?}",
        report.applied,
        report.unused.len(),
        report.unused
    );
    println!("chat template  {}", template.as_deref().unwrap_or("none (bare instruction)"));
    println!("fingerprint    {}", c.fingerprint());
    println!("device         {dev}");
    Ok(())
}
