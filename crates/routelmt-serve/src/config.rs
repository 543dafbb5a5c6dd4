//! The gateway's settings: one TOML file (`--config`), every key overridable by a flag and by
//! an environment variable (flag > environment > file > default). Secrets never appear here:
//! upstream keys and inbound tokens are named by the environment variables that hold them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A configuration the gateway cannot start with; each message is one line naming the file,
/// flag or key at fault.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{}: cannot read ({err})", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        err: std::io::Error,
    },
    /// The file is not valid TOML for [`ServeConfig`] (the parser's message on one line).
    #[error("{}: {message}", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// `--budget` and `--threshold` were both given.
    #[error("--budget and --threshold exclude each other")]
    BudgetAndThreshold,
    /// A key with a missing or unusable value.
    #[error("{key}: {problem}")]
    Key {
        /// The key (`upstreams.small.base_url`).
        key: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl ConfigError {
    /// A problem with `key`.
    pub fn key(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Key { key: key.into(), problem: problem.into() }
    }
}

/// One upstream OpenAI-compatible endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Base URL as OpenAI clients take it (`http://127.0.0.1:8001/v1`); requests go to
    /// `{base_url}/chat/completions`.
    pub base_url: String,
    /// The model name the upstream expects (replaces the client's `model`).
    pub model: String,
    /// The name of the environment variable holding the upstream's API key (optional).
    #[serde(default)]
    pub api_key_env: Option<String>,
}

/// Both sides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Upstreams {
    /// The small model's endpoint.
    #[serde(default)]
    pub small: Upstream,
    /// The large model's endpoint.
    #[serde(default)]
    pub large: Upstream,
}

/// How the large share is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetSettings {
    /// Target large share `p` for the streaming controller.
    pub budget: Option<f64>,
    /// Window `W` over which the share holds within `p ± tolerance`.
    pub window: usize,
    /// Half-width of the guaranteed band.
    pub tolerance: f64,
    /// A fixed threshold on the router score instead of a budget.
    pub threshold: Option<f64>,
    /// With a threshold (from here or router.json): a spend cap, at most this share of the
    /// requests in every window of `window` served large (those over it go small).
    pub max_large_share: Option<f64>,
    /// `redis://HOST:PORT`: replicas share one budget through Redis.
    pub store: Option<String>,
    /// Key prefix in Redis (replicas with the same prefix and window share a budget).
    pub store_key: String,
    /// While the store is unreachable: `local` (route on this replica's controller, add its
    /// decisions to the store when it returns) or `fail-closed` (503).
    pub store_policy: crate::decide::StorePolicy,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        Self {
            budget: None,
            window: 200,
            tolerance: 0.02,
            threshold: None,
            max_large_share: None,
            store: None,
            store_key: "routelmt:budget".into(),
            store_policy: crate::decide::StorePolicy::Local,
        }
    }
}

/// Prefill micro-batching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchSettings {
    /// At most this many requests per prefill.
    pub max_size: usize,
    /// Wait at most this long after the first request for more.
    pub max_wait_ms: u64,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self { max_size: 16, max_wait_ms: 5 }
    }
}

/// Upstream timeouts, retries and the cool-down of a failing upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamPolicy {
    /// Connection timeout.
    pub connect_timeout_ms: u64,
    /// Whole-request timeout (until the response headers, and for a non-streamed body).
    pub timeout_ms: u64,
    /// Retries on the routed side before falling back to the other side.
    pub retries: u32,
    /// Backoff before retry k is `backoff_ms · 2^k`.
    pub backoff_ms: u64,
    /// Consecutive failures after which an upstream cools down.
    pub cooldown_after: u32,
    /// How long a cooled-down upstream is skipped.
    pub cooldown_ms: u64,
    /// Overall deadline of one request's upstream calls, retries and fallback included: no
    /// attempt starts, and no retry waits, past it.
    pub deadline_ms: u64,
    /// A streamed reply whose upstream sends nothing for this long is ended.
    pub stream_idle_ms: u64,
}

impl Default for UpstreamPolicy {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 2_000,
            timeout_ms: 60_000,
            retries: 1,
            backoff_ms: 50,
            cooldown_after: 5,
            cooldown_ms: 10_000,
            deadline_ms: 120_000,
            stream_idle_ms: 60_000,
        }
    }
}

/// What SIGTERM / Ctrl-C does: `/readyz` turns 503 at once; requests are still accepted for
/// `grace_ms` (so a load balancer sees the 503 first), then no more, and in-flight requests and
/// streams get until `deadline_ms` after the signal to finish before the process exits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Drain {
    /// Milliseconds of accepting requests with `/readyz` at 503.
    pub grace_ms: u64,
    /// Milliseconds from the signal to exit, whatever is still running.
    pub deadline_ms: u64,
}

impl Default for Drain {
    fn default() -> Self {
        Self { grace_ms: 1_000, deadline_ms: 30_000 }
    }
}

/// Request limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Longest text scored (characters of the routed message).
    pub max_text_chars: usize,
    /// Chat requests in progress at once (streams until they end); beyond: 503 with
    /// `Retry-After`.
    pub max_concurrent: usize,
    /// Requests waiting for a prefill at once; beyond: 503 with `Retry-After`.
    pub max_queue: usize,
    /// The longest a request body may take to arrive; beyond: 408.
    pub body_timeout_ms: u64,
    /// The longest a request's head (request line and headers) may take to arrive on a
    /// connection, the first request's or the next one's on a kept-alive connection; beyond,
    /// the connection is closed.
    pub header_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_text_chars: 20_000,
            max_concurrent: 512,
            max_queue: 256,
            body_timeout_ms: 30_000,
            header_timeout_ms: 10_000,
        }
    }
}

/// The whole configuration (the TOML file's schema).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Address to listen on.
    pub listen: String,
    /// The small model: a Hugging Face folder or a GGUF file.
    pub model: Option<PathBuf>,
    /// The router folder trained on it.
    pub router: Option<PathBuf>,
    /// tokenizer.json (or its folder) instead of the model's own.
    pub tokenizer: Option<PathBuf>,
    /// `auto`, `cpu` or `gpu`.
    pub device: String,
    /// Decoder weights, `f32`, `f16`, `q8` or `q4` (the router's `weights` when absent).
    pub weights: Option<routelmt_model::Precision>,
    /// Budget policy.
    pub budget: BudgetSettings,
    /// Prefill micro-batching.
    pub batch: BatchSettings,
    /// The two upstreams.
    pub upstreams: Upstreams,
    /// Timeouts, retries, cool-down.
    pub upstream: UpstreamPolicy,
    /// Request limits.
    pub limits: Limits,
    /// Shutdown.
    pub drain: Drain,
    /// Origins allowed by CORS (`*` for any), so that a browser page can call the gateway.
    pub cors_origins: Vec<String>,
    /// The name of an environment variable holding comma-separated inbound bearer tokens;
    /// when set, a request without one of them gets 401.
    pub tokens_env: Option<String>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            model: None,
            router: None,
            tokenizer: None,
            device: "auto".into(),
            weights: None,
            budget: BudgetSettings::default(),
            batch: BatchSettings::default(),
            upstreams: Upstreams::default(),
            upstream: UpstreamPolicy::default(),
            limits: Limits::default(),
            drain: Drain::default(),
            cors_origins: Vec::new(),
            tokens_env: None,
        }
    }
}

/// `routelmt serve` flags; each also reads the environment variable shown in `--help`.
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// TOML configuration file (flags and environment override its keys).
    #[arg(long, env = "ROUTELMT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Validate the configuration (files exist, URLs parse, keys are set) and exit.
    #[arg(long)]
    pub check: bool,
    /// Small model: Hugging Face folder or GGUF file.
    #[arg(long, env = "ROUTELMT_MODEL")]
    pub model: Option<PathBuf>,
    /// Router folder.
    #[arg(long, env = "ROUTELMT_ROUTER")]
    pub router: Option<PathBuf>,
    /// tokenizer.json (or its folder) instead of the model's own.
    #[arg(long, env = "ROUTELMT_TOKENIZER")]
    pub tokenizer: Option<PathBuf>,
    /// HOST:PORT to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "ROUTELMT_LISTEN")]
    pub listen: Option<String>,
    /// Compute device: auto, cpu or gpu.
    #[arg(long, env = "ROUTELMT_DEVICE")]
    pub device: Option<String>,
    /// Decoder weights: f32, f16, q8 or q4 [default: the router's].
    #[arg(long, env = "ROUTELMT_WEIGHTS")]
    pub weights: Option<routelmt_model::Precision>,
    /// Small upstream base URL (e.g. http://127.0.0.1:8001/v1).
    #[arg(long, env = "ROUTELMT_SMALL_URL")]
    pub small_url: Option<String>,
    /// Small upstream model name.
    #[arg(long, env = "ROUTELMT_SMALL_MODEL")]
    pub small_model: Option<String>,
    /// Name of the environment variable holding the small upstream's key.
    #[arg(long, env = "ROUTELMT_SMALL_KEY_ENV")]
    pub small_key_env: Option<String>,
    /// Large upstream base URL.
    #[arg(long, env = "ROUTELMT_LARGE_URL")]
    pub large_url: Option<String>,
    /// Large upstream model name.
    #[arg(long, env = "ROUTELMT_LARGE_MODEL")]
    pub large_model: Option<String>,
    /// Name of the environment variable holding the large upstream's key.
    #[arg(long, env = "ROUTELMT_LARGE_KEY_ENV")]
    pub large_key_env: Option<String>,
    /// Target large share p (streaming controller).
    #[arg(long, env = "ROUTELMT_BUDGET")]
    pub budget: Option<f64>,
    /// Controller window W in requests [default: 200].
    #[arg(long, env = "ROUTELMT_WINDOW")]
    pub window: Option<usize>,
    /// Fixed threshold on the router score instead of a budget.
    #[arg(long, env = "ROUTELMT_THRESHOLD", allow_negative_numbers = true)]
    pub threshold: Option<f64>,
    /// With a threshold: at most this share of every window of requests served large.
    #[arg(long, env = "ROUTELMT_MAX_LARGE_SHARE")]
    pub max_large_share: Option<f64>,
    /// Share one budget across replicas: redis://HOST:PORT.
    #[arg(long, env = "ROUTELMT_BUDGET_STORE")]
    pub budget_store: Option<String>,
    /// While the budget store is unreachable: `local` (route on this replica's controller,
    /// reconcile when it returns) or `fail-closed` (503) [default: local].
    #[arg(long, env = "ROUTELMT_BUDGET_STORE_POLICY", value_parser = parse_store_policy)]
    pub budget_store_policy: Option<crate::decide::StorePolicy>,
    /// Most requests per prefill batch [default: 16].
    #[arg(long, env = "ROUTELMT_BATCH_SIZE")]
    pub batch_size: Option<usize>,
    /// Longest wait for a batch to fill, in ms [default: 5].
    #[arg(long, env = "ROUTELMT_BATCH_WAIT_MS")]
    pub batch_wait_ms: Option<u64>,
    /// Upstream request timeout in ms [default: 60000].
    #[arg(long, env = "ROUTELMT_TIMEOUT_MS")]
    pub timeout_ms: Option<u64>,
    /// Retries before falling back to the other side [default: 1].
    #[arg(long, env = "ROUTELMT_RETRIES")]
    pub retries: Option<u32>,
    /// Overall deadline of one request's upstream calls in ms, retries and fallback included
    /// [default: 120000].
    #[arg(long, env = "ROUTELMT_DEADLINE_MS")]
    pub deadline_ms: Option<u64>,
    /// After SIGTERM, ms until exit whatever is still running [default: 30000].
    #[arg(long, env = "ROUTELMT_DRAIN_MS")]
    pub drain_ms: Option<u64>,
    /// Chat requests in progress at once; beyond: 503 with Retry-After [default: 512].
    #[arg(long, env = "ROUTELMT_MAX_CONCURRENT")]
    pub max_concurrent: Option<usize>,
    /// Requests waiting for a prefill at once; beyond: 503 with Retry-After [default: 256].
    #[arg(long, env = "ROUTELMT_MAX_QUEUE")]
    pub max_queue: Option<usize>,
    /// End a streamed reply after this many ms without upstream data [default: 60000].
    #[arg(long, env = "ROUTELMT_STREAM_IDLE_MS")]
    pub stream_idle_ms: Option<u64>,
    /// The longest a request body may take to arrive, in ms; beyond: 408 [default: 30000].
    #[arg(long, env = "ROUTELMT_BODY_TIMEOUT_MS")]
    pub body_timeout_ms: Option<u64>,
    /// The longest a request's head may take to arrive, in ms; beyond, the connection is
    /// closed [default: 10000].
    #[arg(long, env = "ROUTELMT_HEADER_TIMEOUT_MS")]
    pub header_timeout_ms: Option<u64>,
    /// CORS origin to allow (repeatable; `*` for any).
    #[arg(long = "cors-origin", env = "ROUTELMT_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Name of the environment variable holding comma-separated inbound bearer tokens.
    #[arg(long, env = "ROUTELMT_TOKENS_ENV")]
    pub tokens_env: Option<String>,
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

impl ServeConfig {
    /// Parses a TOML file (`path` names it in errors).
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Toml {
            path: path.to_path_buf(),
            message: e.to_string().replace('\n', " ").trim().to_string(),
        })
    }

    /// The file (if any) with the flags and environment applied over it.
    pub fn resolve(args: &ServeArgs) -> Result<Self, ConfigError> {
        let mut c = match &args.config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|err| ConfigError::Read { path: p.clone(), err })?;
                Self::from_toml(&text, p)?
            }
            None => Self::default(),
        };
        let a = args;
        c.model = a.model.clone().or(c.model);
        c.router = a.router.clone().or(c.router);
        c.tokenizer = a.tokenizer.clone().or(c.tokenizer);
        set(&mut c.listen, a.listen.clone());
        set(&mut c.device, a.device.clone());
        c.weights = a.weights.or(c.weights);
        set(&mut c.upstreams.small.base_url, a.small_url.clone());
        set(&mut c.upstreams.small.model, a.small_model.clone());
        c.upstreams.small.api_key_env = a.small_key_env.clone().or(c.upstreams.small.api_key_env);
        set(&mut c.upstreams.large.base_url, a.large_url.clone());
        set(&mut c.upstreams.large.model, a.large_model.clone());
        c.upstreams.large.api_key_env = a.large_key_env.clone().or(c.upstreams.large.api_key_env);
        if a.budget.is_some() {
            c.budget.budget = a.budget;
            c.budget.threshold = None;
        }
        if a.threshold.is_some() {
            c.budget.threshold = a.threshold;
            c.budget.budget = None;
        }
        if a.budget.is_some() && a.threshold.is_some() {
            return Err(ConfigError::BudgetAndThreshold);
        }
        set(&mut c.budget.window, a.window);
        c.budget.max_large_share = a.max_large_share.or(c.budget.max_large_share);
        c.budget.store = a.budget_store.clone().or(c.budget.store);
        set(&mut c.budget.store_policy, a.budget_store_policy);
        set(&mut c.batch.max_size, a.batch_size);
        set(&mut c.batch.max_wait_ms, a.batch_wait_ms);
        set(&mut c.upstream.timeout_ms, a.timeout_ms);
        set(&mut c.upstream.retries, a.retries);
        set(&mut c.upstream.deadline_ms, a.deadline_ms);
        set(&mut c.drain.deadline_ms, a.drain_ms);
        set(&mut c.limits.max_concurrent, a.max_concurrent);
        set(&mut c.limits.max_queue, a.max_queue);
        set(&mut c.upstream.stream_idle_ms, a.stream_idle_ms);
        set(&mut c.limits.body_timeout_ms, a.body_timeout_ms);
        set(&mut c.limits.header_timeout_ms, a.header_timeout_ms);
        if !a.cors_origins.is_empty() {
            c.cors_origins = a.cors_origins.clone();
        }
        c.tokens_env = a.tokens_env.clone().or(c.tokens_env);
        Ok(c)
    }

    /// Checks everything that can be checked without loading the model: required keys, file
    /// and folder existence, URLs, the budget, and that every named environment variable is
    /// set. Each problem is one line naming the key.
    pub fn check(&self) -> Result<(), ConfigError> {
        let _: SocketAddr = self.listen.parse().map_err(|_| {
            ConfigError::key("listen", format!("'{}' is not HOST:PORT", self.listen))
        })?;
        let model = self.model()?;
        if !model.exists() {
            return Err(ConfigError::key("model", format!("{} does not exist", model.display())));
        }
        let router = self.router()?;
        if !router.is_dir() {
            return Err(ConfigError::key(
                "router",
                format!("{} is not a folder", router.display()),
            ));
        }
        if !matches!(self.device.as_str(), "auto" | "cpu" | "gpu") {
            return Err(ConfigError::key(
                "device",
                format!("'{}' is not auto, cpu or gpu", self.device),
            ));
        }
        for (side, u) in [("small", &self.upstreams.small), ("large", &self.upstreams.large)] {
            let url = reqwest::Url::parse(&u.base_url).map_err(|e| {
                let problem = format!("'{}' is not a URL ({e})", u.base_url);
                ConfigError::key(format!("upstreams.{side}.base_url"), problem)
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                let problem = "scheme must be http or https";
                return Err(ConfigError::key(format!("upstreams.{side}.base_url"), problem));
            }
            if u.model.is_empty() {
                return Err(ConfigError::key(format!("upstreams.{side}.model"), "missing"));
            }
            if let Some(var) = &u.api_key_env
                && std::env::var_os(var).is_none()
            {
                return Err(ConfigError::key(
                    format!("upstreams.{side}.api_key_env"),
                    format!("${var} is not set"),
                ));
            }
        }
        if let Some(p) = self.budget.budget
            && !(0.0..=1.0).contains(&p)
        {
            return Err(ConfigError::key("budget.budget", format!("{p} is not in [0, 1]")));
        }
        if self.budget.budget.is_some() && self.budget.threshold.is_some() {
            return Err(ConfigError::key("budget", "give budget or threshold, not both"));
        }
        if let Some(cap) = self.budget.max_large_share {
            if !(0.0..=1.0).contains(&cap) {
                let problem = format!("{cap} is not in [0, 1]");
                return Err(ConfigError::key("budget.max_large_share", problem));
            }
            if self.budget.budget.is_some() {
                let problem = "caps threshold routing; a budget already holds the share";
                return Err(ConfigError::key("budget.max_large_share", problem));
            }
        }
        if let Some(s) = &self.budget.store
            && !s.starts_with("redis://")
        {
            let shown = crate::decide::redacted(s);
            return Err(ConfigError::key(
                "budget.store",
                format!("'{shown}' is not a redis:// URL"),
            ));
        }
        if self.batch.max_size == 0 {
            return Err(ConfigError::key("batch.max_size", "must be at least 1"));
        }
        if let Some(var) = &self.tokens_env {
            match std::env::var(var) {
                Ok(v) if v.split(',').any(|t| !t.trim().is_empty()) => {}
                _ => {
                    return Err(ConfigError::key(
                        "tokens_env",
                        format!("${var} is not set or holds no token"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The model path, or the error naming where to give it.
    pub fn model(&self) -> Result<&Path, ConfigError> {
        let missing = || ConfigError::key("model", "missing (--model or `model` in the file)");
        self.model.as_deref().ok_or_else(missing)
    }

    /// The router folder, or the error naming where to give it.
    pub fn router(&self) -> Result<&Path, ConfigError> {
        let missing = || ConfigError::key("router", "missing (--router or `router` in the file)");
        self.router.as_deref().ok_or_else(missing)
    }

    /// The inbound tokens (empty when none are configured).
    pub fn inbound_tokens(&self) -> Vec<String> {
        let Some(var) = &self.tokens_env else { return Vec::new() };
        std::env::var(var)
            .unwrap_or_default()
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect()
    }
}

/// `local` or `fail-closed`.
fn parse_store_policy(s: &str) -> Result<crate::decide::StorePolicy, String> {
    match s {
        "local" => Ok(crate::decide::StorePolicy::Local),
        "fail-closed" => Ok(crate::decide::StorePolicy::FailClosed),
        other => Err(format!("'{other}' (expected local or fail-closed)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags_override() {
        let toml = r#"
            listen = "127.0.0.1:9000"
            model = "m"
            [budget]
            budget = 0.3
            window = 100
            [upstreams.small]
            base_url = "http://127.0.0.1:1/v1"
            model = "s"
        "#;
        let c = ServeConfig::from_toml(toml, Path::new("g.toml")).unwrap();
        assert_eq!(
            (c.listen.as_str(), c.budget.window, c.upstreams.small.model.as_str()),
            ("127.0.0.1:9000", 100, "s")
        );
        let mut a = ServeArgs {
            threshold: Some(1.5),
            listen: Some("0.0.0.0:1".into()),
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.toml");
        std::fs::write(&p, toml).unwrap();
        a.config = Some(p);
        let c = ServeConfig::resolve(&a).unwrap();
        assert_eq!(
            (c.budget.threshold, c.budget.budget, c.listen.as_str()),
            (Some(1.5), None, "0.0.0.0:1")
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = ServeConfig::from_toml("[budget]\nbudgte = 0.3", Path::new("g.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("g.toml: ") && e.contains("budgte"), "{e}");
        let c = ServeConfig { listen: "nope".into(), ..Default::default() };
        assert!(c.check().unwrap_err().to_string().starts_with("listen: 'nope'"));
    }
}
