//! Errors of the routing crate, grouped by failure domain: bad input records (always naming
//! the 1-based line of the JSONL input) and bad settings (budgets, router names, guards).

use thiserror::Error;

/// A JSONL line that cannot be used. Every variant names its 1-based line number, so the front
/// door only has to add the file name to get a one-line, actionable message.
#[derive(Debug, Error)]
pub enum RecordError {
    /// The underlying reader failed.
    #[error("line {line}: cannot read: {source}")]
    Io {
        /// Line being read when the error happened.
        line: usize,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes of the line are not UTF-8.
    #[error("line {line}: not valid UTF-8 (byte {byte})")]
    Utf8 {
        /// The line.
        line: usize,
        /// 1-based byte offset of the first invalid byte.
        byte: usize,
    },
    /// The line is not JSON.
    #[error("line {line}: invalid JSON at column {column}: {message}")]
    Json {
        /// The line.
        line: usize,
        /// 1-based column reported by the JSON parser.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// A field holds `NaN`, `Infinity` or `-Infinity` (as Python's `json` writes them) or a
    /// number out of the f64 range.
    #[error("line {line}: field `{field}` is {value}, not a finite number")]
    NonFinite {
        /// The line.
        line: usize,
        /// The field.
        field: String,
        /// The offending text, as written.
        value: String,
    },
    /// The line is valid JSON but not an object.
    #[error("line {line}: expected a JSON object, found {found}")]
    NotObject {
        /// The line.
        line: usize,
        /// The JSON type found.
        found: &'static str,
    },
    /// A required field is absent.
    #[error("line {line}: missing field `{field}`")]
    Missing {
        /// The line.
        line: usize,
        /// The field.
        field: String,
    },
    /// A field that must be a number is something else.
    #[error("line {line}: field `{field}` must be a number, found {found}")]
    NotNumber {
        /// The line.
        line: usize,
        /// The field.
        field: String,
        /// The JSON type found.
        found: &'static str,
    },
    /// A field that must be a string is something else.
    #[error("line {line}: field `{field}` must be a string, found {found}")]
    NotString {
        /// The line.
        line: usize,
        /// The field.
        field: String,
        /// The JSON type found.
        found: &'static str,
    },
    /// `gain` is present but is not `score_large − score_small`.
    #[error(
        "line {line}: gain {gain} disagrees with score_large - score_small = {large} - {small} = {expected}"
    )]
    GainMismatch {
        /// The line.
        line: usize,
        /// The `gain` field as given.
        gain: f64,
        /// `score_large`.
        large: f64,
        /// `score_small`.
        small: f64,
        /// `score_large − score_small`.
        expected: f64,
    },
}

impl RecordError {
    /// The 1-based line the error is about.
    pub fn line(&self) -> usize {
        match self {
            RecordError::Io { line, .. }
            | RecordError::Utf8 { line, .. }
            | RecordError::Json { line, .. }
            | RecordError::NonFinite { line, .. }
            | RecordError::NotObject { line, .. }
            | RecordError::Missing { line, .. }
            | RecordError::NotNumber { line, .. }
            | RecordError::NotString { line, .. }
            | RecordError::GainMismatch { line, .. } => *line,
        }
    }
}

/// Everything else that can go wrong in routing and evaluation.
#[derive(Debug, Error)]
pub enum RouteError {
    /// An input record is unusable.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A budget outside `[0, 1]` (or not a number).
    #[error("budget must be a fraction in [0, 1] (e.g. 0.3 for 30%), got {0}")]
    Budget(f64),
    /// Nothing to evaluate or calibrate on.
    #[error("no records in the input")]
    Empty,
    /// A router name that is not one of the baselines.
    #[error(
        "unknown router `{0}`; expected random, length, oracle-gain, oracle-quality, \
         field:NAME or field:NAME:asc, optionally followed by +guard:FIELD:MAX"
    )]
    UnknownRouter(String),
    /// The same router was asked for twice (its curve would be ambiguous in the report).
    #[error("router `{0}` is listed twice")]
    DuplicateRouter(String),
    /// Two columns that must have the same length do not.
    #[error("length mismatch: {what} has {got} values, expected {expected}")]
    Length {
        /// Which input.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The expected length.
        expected: usize,
    },
    /// A router score that is NaN or infinite.
    #[error("score {index} is {value}, not a finite number")]
    NonFiniteScore {
        /// 0-based index of the score.
        index: usize,
        /// The value.
        value: f64,
    },
    /// Any other invalid setting, described in words.
    #[error("{0}")]
    Invalid(String),
}

/// Result alias of this crate.
pub type Result<T, E = RouteError> = std::result::Result<T, E>;
