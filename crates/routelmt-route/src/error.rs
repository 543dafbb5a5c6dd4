//! Errors of the routing crate, grouped by failure domain: bad input records (always naming
//! the 1-based line of the JSONL input) and bad settings (budgets, router names, guards).

use std::fmt;

use thiserror::Error;

/// A JSONL line that cannot be used: its 1-based line number and what is wrong with it.
///
/// Displays as `line N: message`, so the front door only has to add the file name to get a
/// one-line, actionable message; a front door that writes `file:line: message` itself takes
/// [`RecordError::line`] and [`RecordError::message`] (or matches on [`RecordError::kind`]).
#[derive(Debug)]
pub struct RecordError {
    line: usize,
    kind: RecordErrorKind,
}

impl RecordError {
    /// The error `kind` on 1-based line `line`.
    pub fn new(line: usize, kind: RecordErrorKind) -> Self {
        RecordError { line, kind }
    }

    /// The 1-based line the error is about.
    pub fn line(&self) -> usize {
        self.line
    }

    /// What is wrong with the line.
    pub fn kind(&self) -> &RecordErrorKind {
        &self.kind
    }

    /// The message without the `line N: ` prefix.
    pub fn message(&self) -> String {
        self.kind.to_string()
    }

    /// What is wrong with the line, by value (e.g. to take the I/O error out of
    /// [`RecordErrorKind::Io`]).
    pub fn into_kind(self) -> RecordErrorKind {
        self.kind
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.kind)
    }
}

impl std::error::Error for RecordError {
    /// The cause of the kind (the I/O error of [`RecordErrorKind::Io`]), not the kind itself,
    /// whose text the message already holds.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

/// What is wrong with a JSONL line (the message of a [`RecordError`], without the line).
#[derive(Debug, Error)]
pub enum RecordErrorKind {
    /// The underlying reader failed.
    #[error("cannot read: {source}")]
    Io {
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The line is longer than [`crate::jsonline::MAX_LINE_BYTES`].
    #[error("longer than {limit} bytes (one JSON record per line)")]
    TooLong {
        /// The limit.
        limit: usize,
    },
    /// The bytes of the line are not UTF-8.
    #[error("not valid UTF-8 (byte {byte})")]
    Utf8 {
        /// 1-based byte offset of the first invalid byte.
        byte: usize,
    },
    /// The line is not JSON.
    #[error("invalid JSON at column {column}: {message}")]
    Json {
        /// 1-based column reported by the JSON parser.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// A field holds `NaN`, `Infinity` or `-Infinity` (as Python's `json` writes them) or a
    /// number out of the f64 range.
    #[error("field `{field}` is {value}, not a finite number")]
    NonFinite {
        /// The field.
        field: String,
        /// The offending text, as written.
        value: String,
    },
    /// The line is valid JSON but not an object.
    #[error("expected a JSON object, found {found}")]
    NotObject {
        /// The JSON type found.
        found: &'static str,
    },
    /// A required field is absent.
    #[error("missing field `{field}`")]
    Missing {
        /// The field.
        field: String,
    },
    /// A field that must be a number is something else.
    #[error("field `{field}` must be a number, found {found}")]
    NotNumber {
        /// The field.
        field: String,
        /// The JSON type found.
        found: &'static str,
    },
    /// A field that must be a string is something else.
    #[error("field `{field}` must be a string, found {found}")]
    NotString {
        /// The field.
        field: String,
        /// The JSON type found.
        found: &'static str,
    },
    /// `gain` is present but is not `score_large − score_small`.
    #[error(
        "gain {gain} disagrees with score_large - score_small = {large} - {small} = {expected}"
    )]
    GainMismatch {
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

impl RecordErrorKind {
    /// This error on 1-based line `line`.
    pub fn at(self, line: usize) -> RecordError {
        RecordError::new(line, self)
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
    /// A calibrated threshold file (`THRESH.json`) that does not parse.
    #[error("{name}: not a THRESH.json written by `routelmt calibrate`")]
    ThresholdFile {
        /// The file as the user named it.
        name: String,
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
    },
    /// Any other invalid setting, described in words.
    #[error("{0}")]
    Invalid(String),
}

/// Result alias of this crate.
pub type Result<T, E = RouteError> = std::result::Result<T, E>;
