//! Why a call into the package failed. Every variant shows as the one-line message the CLI
//! prints for the same fault (a model error with its sources joined by `: `), which is what a
//! rejected promise's `Error.message` holds.

use routelmt_model::{ModelError, one_line};
use routelmt_route::RouteError;

/// A failed load, read or routing call.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The model crate rejected a file, a record or a batch.
    #[error("{}", one_line(.0))]
    Model(#[from] ModelError),
    /// The routing crate rejected a budget, threshold or calibration.
    #[error("{}", one_line(.0))]
    Route(#[from] RouteError),
    /// A JavaScript exception (a failed fetch, an unreadable `File`), with its message.
    #[error("{0}")]
    Js(String),
    /// A file the source must have is absent.
    #[error("{0}: missing")]
    Missing(String),
    /// No usable device for what was asked.
    #[error("device: {0}")]
    Device(String),
    /// A bad option or record from the caller.
    #[error("{0}")]
    Input(String),
}

/// Result with [`WebError`].
pub type Result<T> = std::result::Result<T, WebError>;
