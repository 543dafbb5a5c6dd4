//! Turning router scores into decisions under a budget `p`:
//!
//! - **offline top-p** over a batch: exactly `k = floor(p·N + 0.5)` records go to the large
//!   model, the highest scores first, ties by input order (the routed set of the metrics);
//! - **threshold**: route when `s > τ`, with `τ_p` calibrated on held-out scores (plus the share
//!   it routes there and a bootstrap 95% interval of that share);
//! - **quality guard**: records whose small-model quality is above a limit are never routed;
//!   top-p refills its budget from the next best.
//!
//! The streaming budget controller lives in `controller.rs`; `Rule` (`rule.rs`) is the
//! one type a front door routes with, whichever of the three it uses.

use serde::{Deserialize, Serialize};

use crate::error::{Result, RouteError};
use crate::rank::{budget_count, check_budget, check_finite, order_desc};
use crate::rng;

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// The small model (the default).
    Small,
    /// The large model.
    Large,
}

impl Route {
    /// `"small"` or `"large"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Small => "small",
            Route::Large => "large",
        }
    }

    /// True for [`Route::Large`].
    pub fn is_large(self) -> bool {
        self == Route::Large
    }
}

/// Offline top-p: routes exactly `floor(p·N + 0.5)` records (fewer only if a guard leaves
/// fewer eligible), highest scores first, ties by input order. `blocked[i]` marks records a
/// quality guard keeps on the small model.
pub fn top_p(scores: &[f64], p: f64, blocked: Option<&[bool]>) -> Result<Vec<Route>> {
    check_budget(p)?;
    check_finite(scores)?;
    if let Some(b) = blocked
        && b.len() != scores.len()
    {
        return Err(RouteError::Length {
            what: "guard mask",
            got: b.len(),
            expected: scores.len(),
        });
    }
    let k = budget_count(p, scores.len());
    let mut routes = vec![Route::Small; scores.len()];
    let eligible =
        order_desc(scores).into_iter().filter(|&i| blocked.is_none_or(|b| !b[i as usize]));
    for i in eligible.take(k) {
        routes[i as usize] = Route::Large;
    }
    Ok(routes)
}

/// The streaming rule: the large model when the score exceeds the threshold.
pub fn route_by_threshold(score: f64, threshold: f64) -> Route {
    if score > threshold { Route::Large } else { Route::Small }
}

/// Which end of a score field goes to the large model first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Highest values first (a predicted gain).
    #[default]
    Desc,
    /// Lowest values first (a quality estimate of the small model's output).
    Asc,
}

impl Direction {
    /// The router score of a field value (higher = large model first).
    pub fn score(self, value: f64) -> f64 {
        match self {
            Direction::Desc => value,
            Direction::Asc => -value,
        }
    }
}

/// A threshold τ_p calibrated on held-out values of a named score field, as `routelmt
/// calibrate` writes it (`THRESH.json`) and streaming front doors read it back
/// ([`Calibration::from_json`], [`crate::Rule::from_calibration`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The record field holding the score.
    pub field: String,
    /// `desc`: large when `field > threshold`; `asc`: large when `field < threshold`.
    pub order: Direction,
    /// τ_p in the field's own units.
    pub threshold: f64,
    /// The rule in words.
    pub rule: String,
    /// The budget p asked for.
    pub budget: f64,
    /// Held-out scores used.
    pub n: usize,
    /// How many of them the threshold routes.
    pub routed: usize,
    /// `routed / n`.
    pub share: f64,
    /// Bootstrap 95% percentile interval of the share τ_p routes on traffic like the held-out
    /// set (resampled with replacement, same size).
    pub share_ci95: [f64; 2],
    /// Bootstrap resamples drawn.
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    pub seed: u64,
}

impl Calibration {
    /// Calibrates τ_p on held-out field `values` so that the rule routes the top
    /// `k = floor(p·n + 0.5)` of them (highest first for [`Direction::Desc`], lowest first for
    /// [`Direction::Asc`]). On router scores `s = order.score(value)`, τ_p is the midpoint
    /// between the k-th and (k+1)-th largest score. When they tie, no threshold can split
    /// them, and τ_p is that tied value: the tied scores stay small, so the calibrated share is
    /// at most p (a budget is a cap), and `share` says how far below it is. p = 0 gives a
    /// threshold nothing passes, p = 1 one everything passes (`±f64::MAX`).
    pub fn calibrate(
        field: &str,
        order: Direction,
        values: &[f64],
        p: f64,
        bootstrap: usize,
        seed: u64,
    ) -> Result<Self> {
        check_budget(p)?;
        let mut sorted: Vec<f64> = values.iter().map(|&v| order.score(v)).collect();
        check_finite(&sorted)?;
        if sorted.is_empty() {
            return Err(RouteError::Empty);
        }
        let n = sorted.len();
        sorted.sort_unstable_by(|a, b| b.total_cmp(a));
        let score_threshold = split_point(&sorted, budget_count(p, n));
        let routed = sorted.partition_point(|&s| s > score_threshold);
        let share = routed as f64 / n as f64;
        let threshold = order.score(score_threshold); // back to field units
        Ok(Calibration {
            field: field.to_string(),
            order,
            threshold,
            rule: Self::rule_text(field, order, threshold),
            budget: p,
            n,
            routed,
            share,
            share_ci95: bootstrap_share_ci95(n, routed, bootstrap, seed).unwrap_or([share; 2]),
            bootstrap,
            seed,
        })
    }

    /// Reads a `THRESH.json` from its bytes (`name`, e.g. the path, names it in the error).
    pub fn from_json(bytes: &[u8], name: &str) -> Result<Self> {
        serde_json::from_slice(bytes)
            .map_err(|source| RouteError::ThresholdFile { name: name.to_string(), source })
    }

    /// The rule in words, e.g. `large if gain_hat > 0.25, else small`.
    pub fn rule_text(field: &str, order: Direction, threshold: f64) -> String {
        let op = match order {
            Direction::Desc => ">",
            Direction::Asc => "<",
        };
        format!("large if {field} {op} {threshold}, else small")
    }

    /// The decision for one field value.
    pub fn route(&self, value: f64) -> Route {
        route_by_threshold(self.order.score(value), self.order.score(self.threshold))
    }
}

/// The score threshold that routes the top `k` of scores sorted highest first: the midpoint
/// between the k-th and (k+1)-th, or the tied value when they tie (see
/// [`Calibration::calibrate`]).
fn split_point(sorted_desc: &[f64], k: usize) -> f64 {
    let n = sorted_desc.len();
    if k == 0 {
        f64::MAX
    } else if k == n {
        f64::MIN
    } else {
        let (hi, lo) = (sorted_desc[k - 1], sorted_desc[k]);
        let mid = lo + (hi - lo) / 2.0;
        // Adjacent floats: the midpoint can round onto `hi`; `lo` still splits them.
        if mid < hi { mid } else { lo }
    }
}

/// Bootstrap 95% percentile interval of the share a threshold routing `routed` of `n`
/// held-out scores routes on resamples of them (`None` without resamples).
fn bootstrap_share_ci95(n: usize, routed: usize, bootstrap: usize, seed: u64) -> Option<[f64; 2]> {
    if bootstrap == 0 {
        return None;
    }
    let mut shares = Vec::with_capacity(bootstrap);
    let mut rng = rng::seeded(seed);
    for _ in 0..bootstrap {
        // A resampled score exceeds τ iff its rank in the sorted scores is below `routed`:
        // count ranks instead of touching the scores (cost: B·n draws, no memory traffic).
        let hits = (0..n).filter(|_| (rng::below(&mut rng, n as u64) as usize) < routed).count();
        shares.push(hits as f64 / n as f64);
    }
    shares.sort_unstable_by(f64::total_cmp);
    Some([quantile(&shares, 0.025), quantile(&shares, 0.975)])
}

/// Linear-interpolation quantile of sorted values (numpy's default method).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty());
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calibration on raw scores (highest first).
    fn calibrate(s: &[f64], p: f64, bootstrap: usize, seed: u64) -> Result<Calibration> {
        Calibration::calibrate("s", Direction::Desc, s, p, bootstrap, seed)
    }

    fn larges(r: &[Route]) -> Vec<usize> {
        r.iter().enumerate().filter(|(_, r)| r.is_large()).map(|(i, _)| i).collect()
    }

    #[test]
    fn top_p_routes_exactly_k_with_ties_by_input_order() {
        let s = [0.5, 0.9, 0.5, 0.5, 0.1];
        assert_eq!(larges(&top_p(&s, 0.4, None).unwrap()), vec![0, 1]);
        assert_eq!(larges(&top_p(&s, 0.6, None).unwrap()), vec![0, 1, 2]);
        assert_eq!(larges(&top_p(&s, 0.0, None).unwrap()), Vec::<usize>::new());
        assert_eq!(larges(&top_p(&s, 1.0, None).unwrap()).len(), 5);
    }

    #[test]
    fn guard_refills_from_the_next_best() {
        let s = [0.5, 0.9, 0.4, 0.3, 0.1];
        let blocked = [false, true, false, false, false];
        assert_eq!(larges(&top_p(&s, 0.4, Some(&blocked)).unwrap()), vec![0, 2]);
        let all = [true; 5];
        assert!(larges(&top_p(&s, 0.4, Some(&all)).unwrap()).is_empty());
        assert!(top_p(&s, 0.4, Some(&all[..2])).is_err());
    }

    #[test]
    fn calibration_splits_at_the_budget() {
        let s: Vec<f64> = (0..10).map(f64::from).collect();
        let c = calibrate(&s, 0.3, 200, 1).unwrap();
        assert_eq!(c.threshold, 6.5);
        assert_eq!((c.routed, c.share), (3, 0.3));
        assert!(c.share_ci95[0] <= 0.3 && 0.3 <= c.share_ci95[1], "{:?}", c.share_ci95);
        assert!(c.share_ci95[0] >= 0.0 && c.share_ci95[1] <= 1.0);
        assert_eq!(calibrate(&s, 0.0, 0, 1).unwrap().routed, 0);
        assert_eq!(calibrate(&s, 1.0, 0, 1).unwrap().routed, 10);
        assert_eq!(route_by_threshold(7.0, c.threshold), Route::Large);
        assert_eq!(route_by_threshold(6.0, c.threshold), Route::Small);
    }

    #[test]
    fn calibration_with_ties_stays_under_budget() {
        let s = [1.0, 2.0, 2.0, 2.0, 3.0];
        let c = calibrate(&s, 0.4, 0, 0).unwrap(); // k = 2 lands inside the tie
        assert_eq!(c.threshold, 2.0);
        assert_eq!(c.routed, 1);
        let adjacent = [1.0, f64::from_bits(1.0f64.to_bits() + 1)];
        let c = calibrate(&adjacent, 0.5, 0, 0).unwrap();
        assert_eq!(c.routed, 1);
    }

    #[test]
    fn field_thresholds_work_in_both_directions() {
        let v: Vec<f64> = (0..10).map(f64::from).collect();
        let hi = Calibration::calibrate("g", Direction::Desc, &v, 0.3, 0, 0).unwrap();
        assert_eq!((hi.threshold, hi.routed), (6.5, 3));
        assert_eq!(hi.route(7.0), Route::Large);
        assert_eq!(hi.rule, "large if g > 6.5, else small");
        let lo = Calibration::calibrate("q", Direction::Asc, &v, 0.3, 0, 0).unwrap();
        assert_eq!((lo.threshold, lo.routed), (2.5, 3));
        assert_eq!((lo.route(2.0), lo.route(3.0)), (Route::Large, Route::Small));
        let none = Calibration::calibrate("q", Direction::Asc, &v, 0.0, 0, 0).unwrap();
        assert!(v.iter().all(|&x| none.route(x) == Route::Small));
        let all = Calibration::calibrate("q", Direction::Asc, &v, 1.0, 0, 0).unwrap();
        assert!(v.iter().all(|&x| all.route(x) == Route::Large));
        let json = serde_json::to_string(&lo).unwrap();
        assert!(json.contains("\"order\":\"asc\""), "{json}");
        assert_eq!(serde_json::from_str::<Calibration>(&json).unwrap(), lo);
        assert_eq!(Calibration::from_json(json.as_bytes(), "t.json").unwrap(), lo);
    }

    /// THRESH.json keeps its fields, in this order (the CLI writes it, the e2e tests read it).
    #[test]
    fn thresh_json_has_the_contract_fields() {
        let v: Vec<f64> = (0..10).map(f64::from).collect();
        let t = Calibration::calibrate("q", Direction::Asc, &v, 0.3, 10, 2).unwrap();
        let json = serde_json::to_string(&t).unwrap();
        let keys = [
            "field",
            "order",
            "threshold",
            "rule",
            "budget",
            "n",
            "routed",
            "share",
            "share_ci95",
            "bootstrap",
            "seed",
        ];
        let at: Vec<usize> =
            keys.iter().map(|k| json.find(&format!("\"{k}\":")).unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{json}");
        assert_eq!(json.matches("\":").count(), keys.len(), "{json}");
        let e = Calibration::from_json(b"{\"field\": 1}", "t.json").unwrap_err();
        assert!(e.to_string().starts_with("t.json: not a THRESH.json written by"), "{e}");
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn quantile_matches_numpy_linear() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), 2.5);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 4.0);
        assert!((quantile(&v, 0.025) - 1.075).abs() < 1e-12);
    }
}
