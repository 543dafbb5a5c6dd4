//! Argument groups shared by several commands, flattened into each command's arguments, and
//! the value enums behind them. The flags are the same in every command that has them.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use routelmt_model::device::{self, DeviceChoice, SelectedDevice};
use routelmt_model::{ChatMode, PromptStyle};

/// `--device`.
#[derive(Debug, Args)]
pub struct DeviceOpt {
    /// Compute device.
    #[arg(long, value_enum, default_value_t, env = "ROUTELMT_DEVICE")]
    pub device: DeviceChoice,
}

impl DeviceOpt {
    /// Resolves the device and says once, on stderr, which one runs and why.
    pub fn select(&self) -> Result<SelectedDevice> {
        let d = device::select(self.device)?;
        eprintln!("device: {d}");
        Ok(d)
    }
}

/// `--model`, `--tokenizer` and `--chat-template`.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Model: a Hugging Face folder (config.json, model.safetensors[.index.json],
    /// tokenizer.json, tokenizer_config.json) or a .gguf file.
    #[arg(long, env = "ROUTELMT_MODEL")]
    pub model: PathBuf,
    /// tokenizer.json (or its folder) to use instead of the model's own.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Chat template use [default: auto; for score and route, the router's].
    #[arg(long, value_enum)]
    pub chat_template: Option<ChatMode>,
    /// Decoder weights for inference: f32, f16, q8 (int8, one f32 scale per 32 weights) or q4
    /// (4-bit as GGUF Q4_0, one f32 scale per 32 weights)
    /// [default: f32; for score and route, the router's; train records it in the router].
    #[arg(long, env = "ROUTELMT_WEIGHTS")]
    pub weights: Option<routelmt_model::Precision>,
}

impl ModelArgs {
    /// The chat mode: the flag, else `default`.
    pub fn chat_mode(&self, default: ChatMode) -> ChatMode {
        self.chat_template.unwrap_or(default)
    }
}

/// `--input`, `--output` and `--skip-invalid` of the commands that turn request records into
/// output records, one per input line, in input order.
#[derive(Debug, Args)]
pub struct RecordsIo {
    /// JSONL input: "id" and either "input_ids" or "src", "src_lang", "tgt_lang" per line.
    #[arg(long)]
    pub input: PathBuf,
    /// JSONL output, one record per valid input line, in input order.
    #[arg(long)]
    pub output: PathBuf,
    /// Process valid lines and write invalid ones to OUTPUT.rejected.jsonl instead of failing.
    #[arg(long)]
    pub skip_invalid: bool,
}

/// `--batch-size`.
#[derive(Debug, Args)]
pub struct BatchOpt {
    /// Prompts per forward pass (split further if a pass would exceed 128 MiB buffers).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
}

impl BatchOpt {
    /// The batch size as a count.
    pub fn get(&self) -> usize {
        usize::try_from(self.batch_size).unwrap_or(usize::MAX)
    }
}

/// `--prompt-style`.
#[derive(Debug, Args)]
pub struct StyleOpt {
    /// Prompt revision (for records given as text).
    #[arg(long, value_enum, default_value_t)]
    pub prompt_style: PromptStyle,
}
