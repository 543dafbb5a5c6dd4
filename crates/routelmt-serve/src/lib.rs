//! `routelmt serve`: an OpenAI-compatible routing gateway, a front door like the CLI and the
//! browser package (docs/architecture.md). It listens at once, loads the small model and the
//! router in the background (`/readyz` turns ready), runs the router's prefill on each chat
//! request (micro-batched), decides small or large on a budget (the streaming controller, a
//! threshold, or the router's calibrated τ; with Redis, one budget for a fleet), and forwards
//! the request to that upstream with retries and fallback. SIGTERM and Ctrl-C drain in-flight
//! requests, then return.

pub mod api;
pub mod batcher;
pub mod config;
pub mod decide;
pub mod error;
pub mod metrics;
pub mod prompt;
pub mod upstream;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use routelmt_model::device::{self, DeviceChoice};
use routelmt_model::hf;
use routelmt_route::controller::ControllerConfig;
use routelmt_route::policy::{Calibration, Direction};

pub use config::{ConfigError, ServeArgs, ServeConfig};
pub use error::{ApiError, ServeError};

use crate::api::{AppState, Ready};
use crate::batcher::Batcher;
use crate::decide::{Decider, RedisBand, StorePolicy};
use crate::metrics::Metrics;
use crate::upstream::Upstreams;

/// The decider the configuration and the router ask for.
fn decider(cfg: &ServeConfig, scorer: &routelmt_model::Scorer) -> Result<Decider, ServeError> {
    let direction = if scorer.lowest_first() { Direction::Asc } else { Direction::Desc };
    let cap = cfg.budget.max_large_share.map(|share| (share, cfg.budget.window));
    if let Some(tau) = cfg.budget.threshold {
        return Ok(Decider::threshold(tau, direction, cap));
    }
    if let Some(p) = cfg.budget.budget {
        let mut c = ControllerConfig::new(p, cfg.budget.window);
        c.tolerance = cfg.budget.tolerance;
        let band = match &cfg.budget.store {
            Some(url) => {
                // Fail-closed needs the store now; local routing starts without it.
                let policy = cfg.budget.store_policy;
                let eager = policy == StorePolicy::FailClosed;
                Some((RedisBand::new(url, &cfg.budget.store_key, c.window, eager)?, policy))
            }
            None => None,
        };
        return Decider::controller(c, direction, band).map_err(ServeError::Policy);
    }
    let t = scorer.router().config.threshold.as_ref().ok_or(ServeError::NoPolicy)?;
    let cal = Calibration::from_json(t.to_string().as_bytes(), "router.json threshold")
        .map_err(ServeError::Policy)?;
    Ok(Decider::threshold(cal.threshold, cal.order, cap))
}

/// Loads model, router and tokenizer and starts the prefill worker (blocking).
fn load(cfg: &ServeConfig, metrics: Arc<Metrics>) -> Result<Ready, ServeError> {
    let (model, router) = (cfg.model()?, cfg.router()?);
    let choice: DeviceChoice = cfg.device.parse().map_err(ServeError::Device)?;
    let dev = device::select(choice).map_err(ServeError::Model)?;
    eprintln!("serve: device {dev}");
    let scorer =
        hf::load_scorer(model, router, &dev.device, cfg.weights).map_err(ServeError::Model)?;
    let tokenizer = hf::model_tokenizer(model, cfg.tokenizer.as_deref(), scorer.chat_mode())
        .map_err(ServeError::Model)?;
    let style = scorer.prompt_style();
    let max_tokens = routelmt_model::limits::max_prompt_tokens(&scorer.model().config);
    let decider = decider(cfg, &scorer)?;
    let wait = Duration::from_millis(cfg.batch.max_wait_ms);
    let sizes = (cfg.batch.max_size, wait, cfg.limits.max_queue);
    let batcher = Batcher::spawn(scorer, decider, sizes, metrics);
    Ok(Ready { tokenizer, style, max_tokens, batcher })
}

/// Waits for SIGTERM or Ctrl-C.
async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Serves HTTP/1.1 connections from `listener` with `app` until `stop` resolves, then closes
/// idle connections, lets in-flight requests finish and returns when every connection is
/// done. A request head (request line and headers) that takes longer than `header_timeout`
/// to arrive closes its connection (hyper's header read timeout, which needs the timer that
/// `axum::serve` does not give it).
async fn accept(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    header_timeout: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    let (close, closing) = tokio::sync::watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, keep serving.
                        eprintln!("serve: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(app.clone());
                let mut closing = closing.clone();
                conns.spawn(async move {
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(header_timeout)
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        () = async { drop(closing.wait_for(|c| *c).await) } => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
            }
        }
    }
    drop(listener);
    let _ = close.send(true);
    while conns.join_next().await.is_some() {}
    Ok(())
}

/// Runs the gateway until SIGTERM / Ctrl-C, then drains and returns.
pub async fn serve(cfg: ServeConfig) -> Result<(), ServeError> {
    cfg.check()?;
    let metrics = Arc::new(Metrics::new(cfg.budget.window));
    let upstreams =
        Upstreams::new(&cfg.upstreams.small, &cfg.upstreams.large, cfg.upstream.clone())
            .map_err(ServeError::HttpClient)?;
    // Set by the signal: `/readyz` turns 503, and the drain deadline starts.
    let (signalled, mut heard) = tokio::sync::watch::channel(false);
    let state = Arc::new(AppState {
        ready: OnceLock::new(),
        load_error: OnceLock::new(),
        upstreams,
        metrics: metrics.clone(),
        tokens: cfg.inbound_tokens(),
        max_text_chars: cfg.limits.max_text_chars,
        draining: heard.clone(),
        store_policy: cfg.budget.store.as_ref().map(|_| cfg.budget.store_policy),
        admitted: Arc::new(tokio::sync::Semaphore::new(cfg.limits.max_concurrent.max(1))),
        stream_idle: Duration::from_millis(cfg.upstream.stream_idle_ms),
        body_timeout: Duration::from_millis(cfg.limits.body_timeout_ms),
    });
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .map_err(|err| ServeError::Bind { addr: cfg.listen.clone(), err })?;
    let addr = listener.local_addr().map_err(ServeError::Server)?;
    eprintln!("serve: listening on http://{addr}");
    let loading = {
        let (state, cfg) = (state.clone(), cfg.clone());
        tokio::task::spawn_blocking(move || match load(&cfg, metrics) {
            Ok(ready) => {
                let _ = state.ready.set(ready);
                eprintln!("serve: ready");
            }
            Err(e) => {
                eprintln!("serve: loading failed: {e}");
                let _ = state.load_error.set(e);
            }
        })
    };
    let app = api::app(state, cfg.limits.max_body_bytes, &cfg.cors_origins);
    // The signal turns `/readyz` to 503 at once; requests are accepted for the grace period,
    // then no more; whatever still runs at the drain deadline is cut off.
    let (grace, deadline) =
        (Duration::from_millis(cfg.drain.grace_ms), Duration::from_millis(cfg.drain.deadline_ms));
    let stop_accepting = async move {
        signal().await;
        let _ = signalled.send(true);
        eprintln!(
            "serve: shutting down: /readyz is 503; draining in-flight requests (at most {} ms)",
            deadline.as_millis()
        );
        tokio::time::sleep(grace.min(deadline)).await;
    };
    let header_timeout = Duration::from_millis(cfg.limits.header_timeout_ms.max(1));
    let served = accept(listener, app, header_timeout, stop_accepting);
    let cut_off = async move {
        let _ = heard.wait_for(|s| *s).await;
        tokio::time::sleep(deadline).await;
    };
    let result = tokio::select! {
        r = served => r.map_err(ServeError::Server),
        () = cut_off => {
            eprintln!("serve: drain deadline reached; exiting with requests still running");
            Ok(())
        }
    };
    loading.abort();
    result
}
