//! The gateway's errors: [`ServeError`] for start-up and loading, [`ApiError`] for a request,
//! and the one place an error becomes an OpenAI-style JSON response with its 4xx/5xx status.
//!
//! Every message is complete on one line, since that line is what a client or `/readyz` shows
//! (`to_string`, no walk down a `source` chain). So a foreign error is written into the message
//! instead of being chained as a `source`, which would make the CLI's `{:#}` say it twice; a
//! [`ModelError`], whose text leaves its source out, is written with [`one_line`].

use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use routelmt_model::{ModelError, one_line};
use serde_json::json;
use thiserror::Error;

use crate::batcher::RoutingError;
use crate::config::ConfigError;
use crate::decide::StoreError;
use crate::prompt::TargetError;
use crate::upstream::BothFailed;

/// Why the gateway cannot start, or the router cannot load (then `/readyz` and every chat
/// request answer 503 with this message).
#[derive(Debug, Error)]
pub enum ServeError {
    /// The configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Loading the model, router or tokenizer.
    #[error("{}", one_line(.0))]
    Model(ModelError),
    /// The device named in the configuration.
    #[error("device: {0}")]
    Device(String),
    /// Connecting to the budget store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The budget policy: a controller the configuration cannot build, or a router threshold
    /// that cannot be read.
    #[error("{0}")]
    Policy(routelmt_route::RouteError),
    /// No policy at all.
    #[error(
        "no budget policy: give --budget or --threshold, or calibrate the router \
         (`routelmt calibrate --router`)"
    )]
    NoPolicy,
    /// The HTTP client for the upstreams.
    #[error("http client: {0}")]
    HttpClient(reqwest::Error),
    /// The listening socket.
    #[error("listen: cannot bind {addr} ({err})")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why.
        err: std::io::Error,
    },
    /// The server, once running.
    #[error("server: {0}")]
    Server(std::io::Error),
}

/// Why a chat request got no upstream's answer. [`ApiError::status`] and [`ApiError::kind`]
/// say how each is answered.
#[derive(Debug, Error)]
pub enum ApiError {
    /// The body is over `limits.max_body_bytes`.
    #[error("request body too large")]
    BodyTooLarge,
    /// The body could not be read.
    #[error("cannot read the body: {0}")]
    Body(BytesRejection),
    /// The body did not arrive within `limits.body_timeout_ms`.
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    /// The body is JSON but not an object.
    #[error("the body must be a JSON object")]
    NotAnObject,
    /// The body is not JSON.
    #[error("malformed JSON: {0}")]
    Json(serde_json::Error),
    /// The router is loading, or failed to load (the message says which).
    #[error("{0}")]
    NotReady(String),
    /// The request names nothing to route.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The routed text is over `limits.max_text_chars`.
    #[error("text of {chars} characters is over the {limit} limit")]
    TextTooLong {
        /// Its length in characters.
        chars: usize,
        /// The limit.
        limit: usize,
    },
    /// The routed text cannot be tokenized (an unknown language code, say).
    #[error("{}", one_line(.0))]
    Tokenize(ModelError),
    /// The prompt is longer than the model takes (refused before it is queued).
    #[error("prompt of {tokens} tokens is over the model's {limit}-token limit")]
    PromptTooLong {
        /// Its length in tokens.
        tokens: usize,
        /// The limit.
        limit: usize,
    },
    /// The routed text has no tokens.
    #[error("the routed message is empty")]
    EmptyMessage,
    /// Preparing the request failed inside the server (the blocking task that renders the
    /// chat template and tokenizes stopped); the server keeps serving.
    #[error("internal error while preparing the request")]
    Internal,
    /// The prefill worker could not score or decide the request.
    #[error(transparent)]
    Routing(#[from] RoutingError),
    /// Neither upstream answered.
    #[error(transparent)]
    Upstream(#[from] BothFailed),
    /// No valid bearer token where tokens are required.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// No such path.
    #[error("no such route")]
    NotFound,
    /// More requests in progress than `limits.max_concurrent`, or more waiting for a prefill
    /// than `limits.max_queue`: 503 with `Retry-After`.
    #[error("the gateway is at capacity ({0}); retry shortly")]
    Overloaded(&'static str),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BodyTooLarge | Self::TextTooLong { .. } | Self::PromptTooLong { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::Body(_)
            | Self::NotAnObject
            | Self::Json(_)
            | Self::Target(_)
            | Self::Tokenize(_)
            | Self::EmptyMessage => StatusCode::BAD_REQUEST,
            Self::NotReady(_) | Self::Routing(_) | Self::Overloaded(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Upstream(_) => StatusCode::BAD_GATEWAY,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
        }
    }

    /// The OpenAI error `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotReady(_) | Self::Routing(_) | Self::Internal | Self::Overloaded(_) => {
                "server_error"
            }
            Self::Upstream(_) => "upstream_error",
            Self::Unauthorized => "authentication_error",
            _ => "invalid_request_error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "message": self.to_string(), "type": self.kind(), "param": null, "code": null,
        }});
        let content_type = [(header::CONTENT_TYPE, "application/json")];
        let mut r = (self.status(), content_type, body.to_string()).into_response();
        if matches!(self, Self::Overloaded(_) | Self::Routing(RoutingError::Full)) {
            r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        r
    }
}
