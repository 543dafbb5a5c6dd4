//! Routing for RouteLMT, with no model inside: turn router scores into decisions under a
//! budget, and measure decisions against real quality scores.
//!
//! - [`record`], [`jsonline`]: the JSONL record schema, the streaming line reader
//!   ([`JsonLines`]) and an editor that adds fields to a line without touching the rest of it.
//! - [`metrics`], [`rank`]: Spearman, HitRate@p, MeanDelta@p, SevereLoss@p, Quality@p, the
//!   quality curve and APGR, exactly as `docs/metrics.md` defines them.
//! - [`baselines`]: `random`, `length`, `oracle-gain`, `oracle-quality`, `field:NAME[:asc]`,
//!   each optionally with a quality guard.
//! - [`policy`], [`controller`]: offline top-p, calibrated thresholds, the quality guard and a
//!   streaming budget controller that holds the realized share within `p ± b` over every window.
//! - [`rule`]: the decision rule of a routing run (top-p, threshold or controller) and the
//!   budget and threshold values a front door parses to choose it.
//! - [`chrf`]: sacrebleu's chrF2, sentence and corpus level, for gain labels without a neural
//!   metric.
//! - [`report`], [`plot`]: `REPORT.json`, its markdown table and the quality-curve SVG.
//!
//! No file, clock or network access: everything takes values, bytes or a [`std::io::BufRead`],
//! so the same code runs natively and in the browser (wasm32). How the crates fit together:
//! `docs/architecture.md`.

pub mod baselines;
pub mod chrf;
pub mod controller;
pub mod dataset;
pub mod error;
pub mod jsonline;
pub mod metrics;
pub mod plot;
pub mod policy;
pub mod rank;
pub mod record;
pub mod report;
pub mod rng;
pub mod rule;

pub use baselines::{Baseline, Guard, RouterSpec, parse_router_list};
pub use chrf::{ChrfStats, corpus_chrf, sentence_chrf};
pub use controller::{BudgetController, ControllerConfig, Decision};
pub use dataset::{Dataset, Needs};
pub use error::{RecordError, RecordErrorKind, Result, RouteError};
pub use jsonline::JsonLines;
pub use metrics::{Outcomes, Ranking, RouterMetrics, curve_budgets, evaluate};
pub use policy::{Calibration, Direction, Route, route_by_threshold, top_p};
pub use rank::{budget_count, spearman};
pub use record::Record;
pub use report::{
    EvalSettings, Evaluation, Report, RouterReport, evaluate_routers, markdown_table,
};
pub use rule::{Budget, Rule, ThresholdSpec};

#[cfg(test)]
mod tests;
