//! Errors of training, grouped by failure domain; each names the file, line or setting.

use thiserror::Error;

/// Everything that can stop a training run.
#[derive(Debug, Error)]
pub enum TrainError {
    /// A training or validation record is unusable.
    #[error("{file}:{line}: {message}")]
    Record {
        /// The JSONL file.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A data set as a whole is unusable (empty, constant labels).
    #[error("{file}: {message}")]
    Data {
        /// The JSONL file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A setting with a value that cannot work; the front door names its own flag for it.
    #[error("setting '{}': {message}", setting.name())]
    Setting {
        /// Which setting.
        setting: Setting,
        /// What is wrong with its value.
        message: String,
    },
    /// The training or validation set has no examples.
    #[error("the {0} set has no examples")]
    EmptySet(&'static str),
    /// Every training label has the same value.
    #[error("every training label '{label}' is {value}: nothing to learn")]
    ConstantLabels {
        /// The label field.
        label: &'static str,
        /// Its one value.
        value: f64,
    },
    /// A batch too large for the device's buffer limit.
    #[error(
        "a batch of {rows} prompts of up to {tokens} tokens needs {need_mib} MiB device \
         buffers, over the {limit_mib} MiB limit"
    )]
    BatchTooLarge {
        /// Prompts in the batch.
        rows: usize,
        /// Longest prompt, in tokens.
        tokens: usize,
        /// MiB the largest buffer would need.
        need_mib: usize,
        /// The limit in MiB.
        limit_mib: usize,
    },
    /// A checkpoint is missing, corrupt or from another run.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint folder or file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The event callback asked the run to stop after this optimizer step; the last
    /// checkpoint stays for a resumed run.
    #[error("stopped after optimizer step {0} as requested; resume with --resume")]
    Stopped(usize),
    /// The model crate failed (loading, shapes, device).
    #[error(transparent)]
    Model(#[from] routelmt_model::ModelError),
    /// A file could not be read or written.
    #[error("{path}")]
    Io {
        /// The path concerned.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl TrainError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io { path: path.display().to_string(), source }
    }

    pub(crate) fn checkpoint(path: &std::path::Path, message: impl Into<String>) -> Self {
        Self::Checkpoint { path: path.display().to_string(), message: message.into() }
    }
}

/// A training setting, named in errors so that each front door can say it in its own terms
/// (the CLI's flag, the page's field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// Passes over the training set.
    Epochs,
    /// Examples per forward/backward pass.
    BatchSize,
    /// Passes accumulated per optimizer step.
    GradAccum,
    /// Peak learning rate.
    Lr,
    /// Share of steps spent warming up.
    Warmup,
    /// AdamW weight decay.
    WeightDecay,
    /// hidden_states index the head reads.
    Layer,
    /// LoRA rank.
    LoraRank,
    /// LoRA alpha.
    LoraAlpha,
    /// Whether LoRA is trained at all.
    Lora,
}

impl Setting {
    /// The setting's name as `TrainSettings` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Epochs => "epochs",
            Self::BatchSize => "batch_size",
            Self::GradAccum => "grad_accum",
            Self::Lr => "lr",
            Self::Warmup => "warmup",
            Self::WeightDecay => "weight_decay",
            Self::Layer => "layer",
            Self::LoraRank => "lora.rank",
            Self::LoraAlpha => "lora.alpha",
            Self::Lora => "lora",
        }
    }
}

/// Result with [`TrainError`].
pub type Result<T> = std::result::Result<T, TrainError>;
