//! The HTTP API: `POST /v1/chat/completions` (buffered, or `stream: true` passed through byte
//! for byte), `GET /v1/models`, `/healthz`, `/readyz`, `/metrics`. Every error is an
//! OpenAI-style JSON body with a 4xx/5xx status; no request can stop the server.

use std::sync::{Arc, OnceLock};

use axum::Router as HttpRouter;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use routelmt_model::{PromptStyle, Tokenizer};
use serde_json::{Value, json};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::batcher::Batcher;
use crate::decide::Routed;
use crate::error::{ApiError, ServeError};
use crate::metrics::Metrics;
use crate::prompt::routed_text;
use crate::upstream::{Reply, Served, Side, Upstreams};

/// What exists once the model and router are loaded.
pub struct Ready {
    /// The model's tokenizer (with its chat template, in the router's mode).
    pub tokenizer: Tokenizer,
    /// The router's prompt revision.
    pub style: PromptStyle,
    /// The longest prompt in tokens the model takes (longer ones get 413 before queueing).
    pub max_tokens: usize,
    /// The prefill worker.
    pub batcher: Batcher,
}

/// Shared state of the handlers.
pub struct AppState {
    /// Set once loading finished.
    pub ready: OnceLock<Ready>,
    /// A loading failure, reported by `/readyz`.
    pub load_error: OnceLock<ServeError>,
    /// The upstreams.
    pub upstreams: Upstreams,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Inbound bearer tokens (empty: no authentication).
    pub tokens: Vec<String>,
    /// Longest routed text in characters.
    pub max_text_chars: usize,
    /// Turns true on SIGTERM / Ctrl-C: `/readyz` answers 503 from then on.
    pub draining: tokio::sync::watch::Receiver<bool>,
    /// What happens while the budget store is down (`None` without a store).
    pub store_policy: Option<crate::decide::StorePolicy>,
    /// Permits for chat requests in progress (`limits.max_concurrent`).
    pub admitted: Arc<tokio::sync::Semaphore>,
    /// A streamed reply ends after this long without upstream data.
    pub stream_idle: std::time::Duration,
    /// The longest a request body may take to arrive.
    pub body_timeout: std::time::Duration,
}

/// The router of the gateway.
pub fn app(state: Arc<AppState>, max_body: usize, cors_origins: &[String]) -> HttpRouter {
    let api = HttpRouter::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(DefaultBodyLimit::max(max_body));
    let mut app = HttpRouter::new()
        .merge(api)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::NotFound })
        .with_state(state);
    if !cors_origins.is_empty() {
        let origin = if cors_origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            let list: Vec<HeaderValue> =
                cors_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
            AllowOrigin::list(list)
        };
        app = app.layer(
            CorsLayer::new()
                .allow_origin(origin)
                .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
                .expose_headers([
                    header::HeaderName::from_static("x-routelmt-route"),
                    header::HeaderName::from_static("x-routelmt-score"),
                    header::HeaderName::from_static("x-routelmt-served"),
                ]),
        );
    }
    app
}

async fn auth(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if s.tokens.is_empty() || req.method() == Method::OPTIONS {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if s.tokens.iter().any(|k| constant_time_eq(k.as_bytes(), t.as_bytes())) => {
            next.run(req).await
        }
        _ => {
            s.metrics.request("none", 401);
            ApiError::Unauthorized.into_response()
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    if *s.draining.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    if let Some(stopped) = worker_stopped(&s) {
        return stopped;
    }
    match s.ready.get() {
        Some(_) => match (s.metrics.store_up(), s.store_policy) {
            (Some(false), Some(crate::decide::StorePolicy::FailClosed)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "budget store unreachable (fail-closed)\n")
                    .into_response()
            }
            (Some(false), _) => (
                StatusCode::OK,
                "ready; budget store unreachable: routing on the local controller\n",
            )
                .into_response(),
            _ => (StatusCode::OK, "ready\n").into_response(),
        },
        None => not_ready(&s, "loading").into_response(),
    }
}

/// Fails once the prefill worker is gone (every chat request would fail), so that a
/// supervisor restarts the process.
async fn healthz(State(s): State<Arc<AppState>>) -> Response {
    worker_stopped(&s).unwrap_or_else(|| (StatusCode::OK, "ok\n").into_response())
}

/// 503 once the router is loaded but its prefill worker thread has ended.
fn worker_stopped(s: &AppState) -> Option<Response> {
    let stopped = s.ready.get().is_some_and(|r| !r.batcher.alive());
    stopped
        .then(|| (StatusCode::SERVICE_UNAVAILABLE, "the prefill worker stopped\n").into_response())
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render()).into_response()
}

async fn models(State(s): State<Arc<AppState>>) -> Response {
    let data: Vec<Value> =
        ["routelmt", s.upstreams.model(Side::Small), s.upstreams.model(Side::Large)]
            .iter()
            .map(|id| json!({"id": id, "object": "model", "owned_by": "routelmt"}))
            .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

async fn chat(State(s): State<Arc<AppState>>, req: Request) -> Response {
    // Admission: a permit per request in progress, held by a streamed body until it ends.
    let Ok(permit) = s.admitted.clone().try_acquire_owned() else {
        s.metrics.request("none", 503);
        return ApiError::Overloaded("too many requests in progress").into_response();
    };
    // The body must arrive within `limits.body_timeout_ms` (a client that sends it slowly
    // holds a permit and a connection).
    let body = match tokio::time::timeout(s.body_timeout, Bytes::from_request(req, &())).await {
        Ok(body) => body,
        Err(_) => {
            s.metrics.request("none", 408);
            return ApiError::BodyTimeout.into_response();
        }
    };
    let (response, served) = match handle(&s, body, permit).await {
        Ok((response, Some(served))) => (response, served.name()),
        Ok((response, None)) => (response, "none"),
        Err(e) => (e.into_response(), "none"),
    };
    s.metrics.request(served, response.status().as_u16());
    response
}

/// One chat request: the response and the side that served it (`None`: both sides failed,
/// and the error response carries the decision's headers).
async fn handle(
    s: &Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<(Response, Option<Side>), ApiError> {
    let request = parse(body)?;
    let ready = s.ready.get().ok_or_else(|| not_ready(s, "the router is loading"))?;
    // The chat template (which may come from the model file) renders and the text tokenizes
    // on a blocking thread, not on the async runtime.
    let state = Arc::clone(s);
    let (request, ids) = tokio::task::spawn_blocking(move || {
        let ready = state.ready.get().expect("ready before the task started");
        router_input(&request, ready, state.max_text_chars).map(|ids| (request, ids))
    })
    .await
    .map_err(|_| ApiError::Internal)??;
    let routed = ready.batcher.route(ids).await?;
    let (request, stream) = upstream_request(request);
    let served = match s.upstreams.call(routed.side, &request, stream, &s.metrics).await {
        Ok(served) => served,
        Err(e) => {
            let mut response = ApiError::from(e).into_response();
            let mut headers = routing_headers(&routed, routed.side);
            headers.remove("x-routelmt-served");
            response.headers_mut().extend(headers);
            return Ok((response, None));
        }
    };
    let side = served.side;
    // The budget counts the side that served the request (a fallback changes it).
    ready.batcher.served(&routed, side);
    s.metrics.served(side);
    Ok((respond(&routed, served, permit, s.stream_idle), Some(side)))
}

/// The body as a JSON object.
fn parse(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(ApiError::BodyTooLarge);
        }
        Err(e) => return Err(ApiError::Body(e)),
    };
    match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(ApiError::NotAnObject),
        Err(e) => Err(ApiError::Json(e)),
    }
}

/// 503 with the loading failure, or `loading` while the router loads.
fn not_ready(s: &AppState, loading: &str) -> ApiError {
    ApiError::NotReady(s.load_error.get().map_or_else(|| loading.into(), ToString::to_string))
}

/// The token ids the router scores: the request's target within the length limit, tokenized.
fn router_input(request: &Value, ready: &Ready, max_chars: usize) -> Result<Vec<u32>, ApiError> {
    let target = routed_text(request)?;
    let chars = target.chars();
    if chars > max_chars {
        return Err(ApiError::TextTooLong { chars, limit: max_chars });
    }
    let ids = target.token_ids(&ready.tokenizer, ready.style).map_err(ApiError::Tokenize)?;
    if ids.is_empty() {
        return Err(ApiError::EmptyMessage);
    }
    if ids.len() > ready.max_tokens {
        return Err(ApiError::PromptTooLong { tokens: ids.len(), limit: ready.max_tokens });
    }
    Ok(ids)
}

/// The client's request as the upstreams get it (without the gateway's own `routelmt`
/// field), and whether it asks for a stream.
fn upstream_request(mut request: Value) -> (Value, bool) {
    if let Some(obj) = request.as_object_mut() {
        obj.remove("routelmt");
    }
    let stream = request.get("stream").and_then(Value::as_bool) == Some(true);
    (request, stream)
}

/// The upstream's reply with the routing headers.
fn respond(
    routed: &Routed,
    served: Served,
    permit: tokio::sync::OwnedSemaphorePermit,
    idle: std::time::Duration,
) -> Response {
    let headers = routing_headers(routed, served.side);
    match served.reply {
        Reply::Full { status, headers: up, body } => buffered(headers, status, up, body),
        Reply::Stream(resp) => streamed(headers, resp, permit, idle),
    }
}

/// A buffered reply with the upstream's status and content type.
fn buffered(mut headers: HeaderMap, status: u16, up: HeaderMap, body: Bytes) -> Response {
    headers.extend(up);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    (status, headers, body).into_response()
}

/// A streamed reply, its body passed through as it arrives; it ends (with an error, so the
/// client sees a cut stream) when the upstream sends nothing for `idle`. The request's
/// admission permit is released when the stream ends.
fn streamed(
    mut headers: HeaderMap,
    resp: reqwest::Response,
    permit: tokio::sync::OwnedSemaphorePermit,
    idle: std::time::Duration,
) -> Response {
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::OK);
    if let Some(ct) = resp.headers().get(reqwest::header::CONTENT_TYPE)
        && let Ok(v) = HeaderValue::from_bytes(ct.as_bytes())
    {
        headers.insert(header::CONTENT_TYPE, v);
    }
    let chunks = Box::pin(resp.bytes_stream());
    let body =
        futures_util::stream::unfold((chunks, permit), move |(mut chunks, permit)| async move {
            use futures_util::StreamExt;
            match tokio::time::timeout(idle, chunks.next()).await {
                Ok(Some(Ok(bytes))) => Some((Ok(bytes), (chunks, permit))),
                Ok(Some(Err(e))) => Some((Err(std::io::Error::other(e)), (chunks, permit))),
                Ok(None) => None,
                Err(_) => Some((
                    Err(std::io::Error::other("the upstream stream was idle too long")),
                    (chunks, permit),
                )),
            }
        });
    (status, headers, Body::from_stream(body)).into_response()
}

/// `x-routelmt-route` (the side decided), `-served` (the side that answered; absent when
/// neither did), `-score` and `-decision` (the position in the decision sequence).
fn routing_headers(routed: &Routed, served: Side) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let values = [
        ("x-routelmt-route", routed.side.name().to_string()),
        ("x-routelmt-served", served.name().to_string()),
        ("x-routelmt-score", routed.score.to_string()),
        ("x-routelmt-decision", routed.seq.to_string()),
    ];
    for (name, value) in values {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    headers
}
