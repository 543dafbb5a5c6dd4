//! Errors of the model crate, grouped by failure domain. Every message names the file, tensor
//! or field at fault so a user can fix the input without reading code.

use thiserror::Error;

/// Everything that can go wrong between a Hugging Face folder and a hidden state.
#[derive(Debug, Error)]
pub enum ModelError {
    /// `config.json` is unreadable, malformed, or describes something we do not support.
    #[error("{file}: {message}")]
    Config {
        /// The config file (or a description of the bytes' origin).
        file: String,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A weight file is missing, truncated, corrupt, or a tensor in it is wrong.
    #[error("{file}: {message}")]
    Weights {
        /// The safetensors file (or index) at fault.
        file: String,
        /// What is wrong, naming the tensor.
        message: String,
    },
    /// The tokenizer could not be loaded or failed on an input.
    #[error("tokenizer: {what}")]
    Tokenizer {
        /// What failed, naming the file for a load.
        what: String,
        /// The tokenizers crate's error.
        source: tokenizers::Error,
    },
    /// A language code outside the 60 LMT-60 languages.
    #[error("unknown language code '{code}'; supported codes: {supported}")]
    UnknownLanguage {
        /// The code given.
        code: String,
        /// All supported codes, comma-separated.
        supported: String,
    },
    /// An input the model cannot run (empty sequence, id out of range, too long for the device).
    #[error("{0}")]
    Input(String),
    /// The compute device failed or could not be created.
    #[error("device: {0}")]
    Device(String),
    /// An I/O error with the path it concerns (native front doors only).
    #[error("{path}")]
    Io {
        /// The path being read.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl ModelError {
    pub(crate) fn config(file: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config { file: file.into(), message: message.into() }
    }

    pub(crate) fn weights(file: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Weights { file: file.into(), message: message.into() }
    }
}

/// Result with [`ModelError`].
pub type Result<T> = std::result::Result<T, ModelError>;

/// An error and its sources on one line (`outer: inner: ...`), for messages built from an
/// error that will not travel as a source itself (a rejected record's reason, a browser
/// `Error`). Each error's own text leaves its source out, so nothing is said twice.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// The value of `s` among an option enum's `names`, or `unknown {what} 's' (expected a, b or
/// c)`: the one rule behind every option enum's `FromStr` ([`from_str_by_name`]).
pub(crate) fn parse_name<T: Copy>(
    s: &str,
    what: &str,
    names: &[(&str, T)],
) -> std::result::Result<T, String> {
    if let Some((_, v)) = names.iter().find(|(n, _)| *n == s) {
        return Ok(*v);
    }
    let list: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
    let expected = match list.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    Err(format!("unknown {what} '{s}' (expected {expected})"))
}

/// `FromStr` for an option enum from its names: `from_str_by_name!(Type, "what", "name" =>
/// Variant, ...)`.
macro_rules! from_str_by_name {
    ($ty:ty, $what:literal, $($name:literal => $v:ident),+ $(,)?) => {
        impl std::str::FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> std::result::Result<Self, String> {
                $crate::error::parse_name(s, $what, &[$(($name, <$ty>::$v)),+])
            }
        }
    };
}
pub(crate) use from_str_by_name;
