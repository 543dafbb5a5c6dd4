//! The HTTP API: `POST /v1/chat/completions` (buffered, or `stream: true` passed through byte
//! for byte), `GET /v1/models`, `/healthz`, `/readyz`, `/metrics`. Every error is an
//! OpenAI-style JSON body with a 4xx/5xx status; no request can stop the server.

use std::sync::{Arc, OnceLock};

use axum::Router as HttpRouter;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use routelmt_model::{PromptStyle, Tokenizer};
use serde_json::{Value, json};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::batcher::Batcher;
use crate::metrics::Metrics;
use crate::prompt::{Routed as Target, routed_text};
use crate::upstream::{Reply, Side, Upstreams};

/// What exists once the model and router are loaded.
pub struct Ready {
    /// The model's tokenizer (with its chat template, in the router's mode).
    pub tokenizer: Tokenizer,
    /// The router's prompt revision.
    pub style: PromptStyle,
    /// The prefill worker.
    pub batcher: Batcher,
}

/// Shared state of the handlers.
pub struct AppState {
    /// Set once loading finished.
    pub ready: OnceLock<Ready>,
    /// A loading failure, reported by `/readyz`.
    pub load_error: OnceLock<String>,
    /// The upstreams.
    pub upstreams: Upstreams,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Inbound bearer tokens (empty: no authentication).
    pub tokens: Vec<String>,
    /// Longest routed text in characters.
    pub max_text_chars: usize,
}

/// An OpenAI-style error response.
pub fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    let body =
        json!({"error": {"message": message.into(), "type": kind, "param": null, "code": null}});
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
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
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            error(StatusCode::NOT_FOUND, "invalid_request_error", "no such route")
        })
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
            error(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "missing or invalid bearer token",
            )
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    match (s.ready.get(), s.load_error.get()) {
        (Some(_), _) => (StatusCode::OK, "ready\n").into_response(),
        (None, Some(e)) => error(StatusCode::SERVICE_UNAVAILABLE, "server_error", e.clone()),
        (None, None) => error(StatusCode::SERVICE_UNAVAILABLE, "server_error", "loading"),
    }
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

async fn chat(State(s): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Response {
    let (response, route) = handle(&s, body).await;
    s.metrics.request(route, response.status().as_u16());
    response
}

fn bad(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_request_error", message)
}

/// One chat request; returns the response and the side that served it (`none` if neither).
async fn handle(s: &AppState, body: Result<Bytes, BytesRejection>) -> (Response, &'static str) {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let m = "request body too large";
            return (error(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", m), "none");
        }
        Err(e) => return (bad(format!("cannot read the body: {e}")), "none"),
    };
    let mut request: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return (bad("the body must be a JSON object"), "none"),
        Err(e) => return (bad(format!("malformed JSON: {e}")), "none"),
    };
    let Some(ready) = s.ready.get() else {
        let m = s.load_error.get().cloned().unwrap_or_else(|| "the router is loading".into());
        return (error(StatusCode::SERVICE_UNAVAILABLE, "server_error", m), "none");
    };
    let target = match routed_text(&request) {
        Ok(t) => t,
        Err(m) => return (bad(m), "none"),
    };
    let chars = match &target {
        Target::Translation { src, .. } => src.chars().count(),
        Target::Message(m) => m.chars().count(),
    };
    if chars > s.max_text_chars {
        let m = format!("text of {chars} characters is over the {} limit", s.max_text_chars);
        return (error(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", m), "none");
    }
    let ids = match target.token_ids(&ready.tokenizer, ready.style) {
        Ok(ids) if !ids.is_empty() => ids,
        Ok(_) => return (bad("the routed message is empty"), "none"),
        Err(m) => return (bad(m), "none"),
    };
    let routed = match ready.batcher.route(ids).await {
        Ok(r) => r,
        Err(m) => return (error(StatusCode::SERVICE_UNAVAILABLE, "server_error", m), "none"),
    };
    if let Some(obj) = request.as_object_mut() {
        obj.remove("routelmt");
    }
    let stream = request.get("stream").and_then(Value::as_bool) == Some(true);
    let side = if routed.decided.large { Side::Large } else { Side::Small };
    let served = match s.upstreams.call(side, &request, stream, &s.metrics).await {
        Ok(served) => served,
        Err(e) => {
            let m = format!("both upstreams failed: {}", e.0);
            return (error(StatusCode::BAD_GATEWAY, "upstream_error", m), "none");
        }
    };
    let mut headers = HeaderMap::new();
    let put = |h: &mut HeaderMap, k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    put(&mut headers, "x-routelmt-route", side.name().into());
    put(&mut headers, "x-routelmt-served", served.side.name().into());
    put(&mut headers, "x-routelmt-score", format!("{}", routed.score));
    put(&mut headers, "x-routelmt-decision", routed.decided.seq.to_string());
    let response = match served.reply {
        Reply::Full { status, headers: up, body } => {
            headers.extend(up);
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, headers, body).into_response()
        }
        Reply::Stream(resp) => {
            let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::OK);
            if let Some(ct) = resp.headers().get(reqwest::header::CONTENT_TYPE)
                && let Ok(v) = HeaderValue::from_bytes(ct.as_bytes())
            {
                headers.insert(header::CONTENT_TYPE, v);
            }
            (status, headers, Body::from_stream(resp.bytes_stream())).into_response()
        }
    };
    (response, served.side.name())
}
