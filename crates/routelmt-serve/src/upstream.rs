//! Calls to the two OpenAI-compatible upstreams with bounded retries, backoff, fallback to the
//! other side and a cool-down for an upstream that keeps failing, all within one overall
//! deadline per request. A 5xx status, a 429, a timeout, a refused or reset connection (before
//! the response is complete, for a buffered response; before the headers, for a stream) is a
//! failure. A 429's `Retry-After` (seconds) sets the wait before the retry when it fits the
//! deadline (else the other side is tried at once) and cools the side down at least that long.
//! Any other 4xx is the upstream's answer: its status is passed on, its body replaced by a
//! summary (a provider's error body may echo part of the key). Keys are sent as
//! `Authorization: Bearer` and never logged or echoed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use thiserror::Error;

use crate::config::{Upstream, UpstreamPolicy};
pub use crate::decide::Side;
use crate::metrics::Metrics;

struct Endpoint {
    url: String,
    model: String,
    key: Option<String>,
    fails: AtomicU32,
    down_until: Mutex<Option<Instant>>,
}

impl Endpoint {
    fn cooling(&self) -> bool {
        let g = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        g.is_some_and(|t| Instant::now() < t)
    }
}

/// What came back.
pub enum Reply {
    /// A complete response (non-streaming requests).
    Full {
        /// Status.
        status: u16,
        /// Headers worth passing on (content type).
        headers: HeaderMap,
        /// The body.
        body: Bytes,
    },
    /// A response whose body is passed through as it arrives.
    Stream(reqwest::Response),
}

/// A served request: the reply and the side that served it.
pub struct Served {
    /// The reply.
    pub reply: Reply,
    /// The side that answered.
    pub side: Side,
}

/// Both sides failed: every attempt's error, for the client's error message.
#[derive(Debug, Error)]
#[error("both upstreams failed: {0}")]
pub struct BothFailed(pub String);

/// The two upstreams.
pub struct Upstreams {
    client: reqwest::Client,
    sides: [Endpoint; 2],
    policy: UpstreamPolicy,
}

fn endpoint(u: &Upstream) -> Endpoint {
    let key = u.api_key_env.as_ref().and_then(|v| std::env::var(v).ok());
    Endpoint {
        url: format!("{}/chat/completions", u.base_url.trim_end_matches('/')),
        model: u.model.clone(),
        key,
        fails: AtomicU32::new(0),
        down_until: Mutex::new(None),
    }
}

enum Attempt {
    Ok(Reply),
    /// Kind, message, and the wait the upstream asked for (429 `Retry-After`).
    Failed(&'static str, String, Option<Duration>),
}

/// A `Retry-After` header in seconds (the HTTP-date form is not used by API providers).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The body sent in place of an upstream's 4xx body.
fn summary(side: &str, status: u16) -> Bytes {
    let e = serde_json::json!({"error": {
        "message": format!("the {side} upstream refused the request with status {status}"),
        "type": "upstream_error",
        "code": status,
    }});
    Bytes::from(e.to_string())
}

impl Upstreams {
    /// Clients for `small` and `large`.
    pub fn new(
        small: &Upstream,
        large: &Upstream,
        policy: UpstreamPolicy,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(policy.connect_timeout_ms))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self { client, sides: [endpoint(small), endpoint(large)], policy })
    }

    fn side(&self, s: Side) -> &Endpoint {
        &self.sides[match s {
            Side::Small => 0,
            Side::Large => 1,
        }]
    }

    /// The upstream model name of a side.
    pub fn model(&self, s: Side) -> &str {
        &self.side(s).model
    }

    /// Sends `body` (the client's request with the model replaced per side) to `routed`,
    /// retrying, then to the other side. A side cooling down is tried last.
    pub async fn call(
        &self,
        routed: Side,
        body: &serde_json::Value,
        stream: bool,
        metrics: &Metrics,
    ) -> Result<Served, BothFailed> {
        let order = if self.side(routed).cooling() && !self.side(routed.other()).cooling() {
            [routed.other(), routed]
        } else {
            [routed, routed.other()]
        };
        let mut errors = Vec::new();
        let deadline = Instant::now() + Duration::from_millis(self.policy.deadline_ms);
        for side in order {
            let ep = self.side(side);
            let mut body = body.clone();
            body["model"] = serde_json::Value::String(ep.model.clone());
            let mut asked: Option<Duration> = None;
            for attempt in 0..=self.policy.retries {
                if attempt > 0 {
                    let backoff = self.policy.backoff_ms.saturating_mul(1 << (attempt - 1).min(10));
                    let wait = Duration::from_millis(backoff).max(asked.unwrap_or_default());
                    if Instant::now() + wait >= deadline {
                        errors.push(format!(
                            "{} upstream: no retry within the deadline (wait {} ms)",
                            side.name(),
                            wait.as_millis()
                        ));
                        break;
                    }
                    tokio::time::sleep(wait).await;
                }
                let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                    errors.push(format!("{} upstream: deadline reached", side.name()));
                    break;
                };
                let started = Instant::now();
                match self.attempt(ep, side, &body, stream, left).await {
                    Attempt::Ok(reply) => {
                        let status = match &reply {
                            Reply::Full { status, .. } => *status,
                            Reply::Stream(r) => r.status().as_u16(),
                        };
                        metrics.upstream(side.name(), started.elapsed(), &status.to_string());
                        ep.fails.store(0, Ordering::Relaxed);
                        if side != routed {
                            metrics.fallback(routed.name(), side.name());
                        }
                        return Ok(Served { reply, side });
                    }
                    Attempt::Failed(kind, message, wait) => {
                        let outcome = if kind == "status" { message.clone() } else { kind.into() };
                        metrics.upstream(side.name(), started.elapsed(), &outcome);
                        metrics.upstream_error(side.name(), kind);
                        self.failed(ep, wait);
                        asked = wait;
                        errors.push(format!("{} upstream: {message}", side.name()));
                    }
                }
            }
        }
        Err(BothFailed(errors.join("; ")))
    }

    /// Counts a failure; cools the side down after `cooldown_after` in a row, or for at least
    /// `asked` (a 429's `Retry-After`) at once.
    fn failed(&self, ep: &Endpoint, asked: Option<Duration>) {
        let n = ep.fails.fetch_add(1, Ordering::Relaxed) + 1;
        let mut cool = (n >= self.policy.cooldown_after.max(1))
            .then(|| Duration::from_millis(self.policy.cooldown_ms));
        if let Some(a) = asked {
            cool = Some(cool.unwrap_or_default().max(a));
        }
        if let Some(cool) = cool {
            let until = Instant::now() + cool;
            let mut g = ep.down_until.lock().unwrap_or_else(|e| e.into_inner());
            *g = Some(g.map_or(until, |t| t.max(until)));
        }
    }

    async fn attempt(
        &self,
        ep: &Endpoint,
        side: Side,
        body: &serde_json::Value,
        stream: bool,
        left: Duration,
    ) -> Attempt {
        let mut req = self.client.post(&ep.url).json(body);
        if let Some(key) = &ep.key {
            req = req.bearer_auth(key);
        }
        let timeout = Duration::from_millis(self.policy.timeout_ms).min(left);
        let kind = |e: &reqwest::Error| -> &'static str {
            if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connect"
            } else {
                "reset"
            }
        };
        let resp = match tokio::time::timeout(timeout, req.send()).await {
            Err(_) => return Attempt::Failed("timeout", "timed out".into(), None),
            Ok(Err(e)) => return Attempt::Failed(kind(&e), without_url(&e), None),
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        if status >= 500 {
            return Attempt::Failed("status", status.to_string(), None);
        }
        if status == 429 {
            return Attempt::Failed("rate_limited", "429".into(), retry_after(resp.headers()));
        }
        if (400..500).contains(&status) {
            let mut headers = HeaderMap::new();
            headers.insert(
                reqwest::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return Attempt::Ok(Reply::Full {
                status,
                headers,
                body: summary(side.name(), status),
            });
        }
        if stream && status < 300 {
            return Attempt::Ok(Reply::Stream(resp));
        }
        let mut headers = HeaderMap::new();
        if let Some(ct) = resp.headers().get(reqwest::header::CONTENT_TYPE) {
            headers.insert(reqwest::header::CONTENT_TYPE, ct.clone());
        } else {
            headers.insert(
                reqwest::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        match tokio::time::timeout(timeout, resp.bytes()).await {
            Err(_) => Attempt::Failed("timeout", "timed out reading the body".into(), None),
            Ok(Err(e)) => Attempt::Failed("reset", without_url(&e), None),
            Ok(Ok(body)) => Attempt::Ok(Reply::Full { status, headers, body }),
        }
    }
}

/// An error's text without the URL (which may carry credentials in userinfo).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<upstream>");
    }
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
