//! Prometheus text metrics (exposition format 0.0.4), kept in plain maps behind one mutex:
//! requests by route and status, decisions, the large share over the controller window, the
//! budget and threshold, prefill and upstream latency histograms, upstream attempts and
//! errors, and fallbacks. No label ever holds a secret: labels are fixed words and statuses.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use crate::decide::{Routed, Side};

const BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    n: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += secs;
        self.n += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}", self.counts[i]);
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.n);
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.n);
    }
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    decisions: BTreeMap<&'static str, u64>,
    window: VecDeque<bool>,
    window_len: usize,
    served_window: VecDeque<bool>,
    amended: BTreeMap<(&'static str, &'static str), u64>,
    budget: Option<f64>,
    threshold: f64,
    prefill: Histogram,
    prefill_batches: u64,
    prefill_rows: u64,
    dropped_before_prefill: u64,
    store: Option<(bool, u64)>,
    upstream_latency: BTreeMap<&'static str, Histogram>,
    upstream_requests: BTreeMap<(&'static str, String), u64>,
    upstream_errors: BTreeMap<(&'static str, &'static str), u64>,
    fallbacks: BTreeMap<(&'static str, &'static str), u64>,
}

/// Appends `large` to a window of at most `len` decisions.
fn slide(window: &mut VecDeque<bool>, len: usize, large: bool) {
    window.push_back(large);
    if window.len() > len {
        window.pop_front();
    }
}

/// The gateway's counters.
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    /// Empty metrics; the large share is reported over the last `window` decisions.
    pub fn new(window: usize) -> Self {
        let inner = Inner { window_len: window.max(1), threshold: f64::NAN, ..Default::default() };
        Self { inner: Mutex::new(inner) }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// A finished request: the side that served it (`small`, `large`, or `none`) and the
    /// status sent to the client.
    pub fn request(&self, route: &str, status: u16) {
        self.with(|m| *m.requests.entry((route.to_string(), status)).or_default() += 1);
    }

    /// One prefill batch.
    pub fn prefill(&self, took: Duration, rows: usize) {
        self.with(|m| {
            m.prefill.observe(took.as_secs_f64());
            m.prefill_batches += 1;
            m.prefill_rows += rows as u64;
        });
    }

    /// The budget store's state after a batch: whether it answered, and the decisions made on
    /// the local controller while it did not (see `Decider::store`).
    pub fn store(&self, state: Option<(bool, u64)>) {
        self.with(|m| m.store = state);
    }

    /// Whether the budget store answered last (`None` without a store).
    pub fn store_up(&self) -> Option<bool> {
        self.with(|m| m.store.map(|(up, _)| up))
    }

    /// Requests dropped before the prefill because their client had gone away.
    pub fn dropped_before_prefill(&self, n: usize) {
        if n > 0 {
            self.with(|m| m.dropped_before_prefill += n as u64);
        }
    }

    /// One routing decision.
    pub fn decision(&self, d: &Routed, budget: Option<f64>) {
        self.with(|m| {
            *m.decisions.entry(d.side.name()).or_default() += 1;
            slide(&mut m.window, m.window_len, d.side == Side::Large);
            m.budget = budget;
            m.threshold = d.threshold;
        });
    }

    /// A request answered by `side` (after any fallback).
    pub fn served(&self, side: Side) {
        self.with(|m| slide(&mut m.served_window, m.window_len, side == Side::Large));
    }

    /// The decider changed a decision from `from` to `to` (what was served).
    pub fn amended(&self, from: Side, to: Side) {
        self.with(|m| *m.amended.entry((from.name(), to.name())).or_default() += 1);
    }

    /// One upstream attempt: its latency and outcome (`200`, `503`, `timeout`, `connect`, ...).
    pub fn upstream(&self, side: &'static str, took: Duration, outcome: &str) {
        self.with(|m| {
            m.upstream_latency.entry(side).or_default().observe(took.as_secs_f64());
            *m.upstream_requests.entry((side, outcome.to_string())).or_default() += 1;
        });
    }

    /// One failed upstream attempt, by kind (`status`, `timeout`, `connect`, `reset`).
    pub fn upstream_error(&self, side: &'static str, kind: &'static str) {
        self.with(|m| *m.upstream_errors.entry((side, kind)).or_default() += 1);
    }

    /// A request served by the other side than the one routed to.
    pub fn fallback(&self, from: &'static str, to: &'static str) {
        self.with(|m| *m.fallbacks.entry((from, to)).or_default() += 1);
    }

    /// The Prometheus text.
    pub fn render(&self) -> String {
        self.with(|m| {
            let mut o = String::new();
            let head = |o: &mut String, name: &str, kind: &str, help: &str| {
                let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
            };
            head(&mut o, "routelmt_requests_total", "counter", "Chat requests by served side and status.");
            for ((route, status), n) in &m.requests {
                let _ = writeln!(o, "routelmt_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
            }
            head(&mut o, "routelmt_decisions_total", "counter", "Routing decisions.");
            for (route, n) in &m.decisions {
                let _ = writeln!(o, "routelmt_decisions_total{{route=\"{route}\"}} {n}");
            }
            let share = |w: &VecDeque<bool>| {
                if w.is_empty() { 0.0 } else { w.iter().filter(|&&l| l).count() as f64 / w.len() as f64 }
            };
            head(&mut o, "routelmt_large_share", "gauge", "Large share of the last window of decisions, as decided.");
            let _ = writeln!(o, "routelmt_large_share {}", share(&m.window));
            head(&mut o, "routelmt_served_total", "counter", "Requests answered, by the side that served them (after fallbacks).");
            // The same events as the requests by served side, summed over their statuses.
            for side in [Side::Small, Side::Large] {
                let n: u64 = (m.requests.iter().filter(|((r, _), _)| r == side.name()))
                    .map(|(_, n)| n)
                    .sum();
                let _ = writeln!(o, "routelmt_served_total{{route=\"{}\"}} {n}", side.name());
            }
            head(&mut o, "routelmt_served_large_share", "gauge", "Large share of the last window of answered requests, as served.");
            let _ = writeln!(o, "routelmt_served_large_share {}", share(&m.served_window));
            head(&mut o, "routelmt_budget_amended_total", "counter", "Decisions the budget recounted as the side that served them (fallbacks).");
            for ((from, to), n) in &m.amended {
                let _ = writeln!(o, "routelmt_budget_amended_total{{from=\"{from}\",to=\"{to}\"}} {n}");
            }
            if let Some(b) = m.budget {
                head(&mut o, "routelmt_budget", "gauge", "Target large share.");
                let _ = writeln!(o, "routelmt_budget {b}");
            }
            if let Some((up, local)) = m.store {
                head(&mut o, "routelmt_budget_store_up", "gauge", "Whether the budget store answered the last decision.");
                let _ = writeln!(o, "routelmt_budget_store_up {}", u8::from(up));
                head(&mut o, "routelmt_budget_local_decisions_total", "counter", "Decisions made on the local controller while the budget store was unreachable.");
                let _ = writeln!(o, "routelmt_budget_local_decisions_total {local}");
            }
            head(&mut o, "routelmt_threshold", "gauge", "Threshold of the last decision.");
            let _ = writeln!(o, "routelmt_threshold {}", m.threshold);
            head(&mut o, "routelmt_prefill_seconds", "histogram", "Prefill time per batch.");
            m.prefill.render(&mut o, "routelmt_prefill_seconds", "");
            head(&mut o, "routelmt_prefill_rows_total", "counter", "Requests prefilled.");
            let _ = writeln!(o, "routelmt_prefill_rows_total {}", m.prefill_rows);
            head(&mut o, "routelmt_dropped_before_prefill_total", "counter", "Requests whose client left before their prefill.");
            let _ = writeln!(o, "routelmt_dropped_before_prefill_total {}", m.dropped_before_prefill);
            head(&mut o, "routelmt_upstream_seconds", "histogram", "Upstream attempt latency.");
            for (side, h) in &m.upstream_latency {
                h.render(&mut o, "routelmt_upstream_seconds", &format!("upstream=\"{side}\""));
            }
            head(&mut o, "routelmt_upstream_requests_total", "counter", "Upstream attempts by outcome.");
            for ((side, outcome), n) in &m.upstream_requests {
                let _ = writeln!(
                    o,
                    "routelmt_upstream_requests_total{{upstream=\"{side}\",outcome=\"{outcome}\"}} {n}"
                );
            }
            head(&mut o, "routelmt_upstream_errors_total", "counter", "Failed upstream attempts.");
            for ((side, kind), n) in &m.upstream_errors {
                let _ = writeln!(o, "routelmt_upstream_errors_total{{upstream=\"{side}\",kind=\"{kind}\"}} {n}");
            }
            head(&mut o, "routelmt_fallbacks_total", "counter", "Requests served by the other side.");
            for ((from, to), n) in &m.fallbacks {
                let _ = writeln!(o, "routelmt_fallbacks_total{{from=\"{from}\",to=\"{to}\"}} {n}");
            }
            o
        })
    }
}
