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
    /// Settings that cannot work together.
    #[error("{0}")]
    Settings(String),
    /// A checkpoint is missing, corrupt or from another run.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint folder or file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The run stopped on request after a number of steps (the test hook that simulates an
    /// interrupt); the last checkpoint stays for `--resume`.
    #[error("stopped after optimizer step {0} as requested; resume with --resume")]
    Stopped(usize),
    /// The model crate failed (loading, shapes, device).
    #[error(transparent)]
    Model(#[from] routelmt_model::ModelError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
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

/// Result with [`TrainError`].
pub type Result<T> = std::result::Result<T, TrainError>;
