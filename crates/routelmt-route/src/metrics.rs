//! The routing metrics of `docs/metrics.md` (Metrics), the project's contract:
//!
//! - `k = floor(p·N + 0.5)`; routed set `R` = the `k` highest router scores `s`, ties by input
//!   order (earlier first).
//! - Spearman: Pearson correlation of average-tie ranks of `s` and `g`; 0 if either is constant.
//! - HitRate@p (%): `100·(|R∩A| + min(|R∩B|, k−|A|))/k` with `g_k` the k-th largest gain,
//!   `A = {g > g_k}`, `B = {g = g_k}` (overlap with the best oracle top-k, tie-aware).
//! - MeanDelta@p: mean `g` over `R`. SevereLoss@p (%): share of `R` with `g < −δ`.
//! - Quality@p: mean over all records of `score_large` if routed else `score_small`.
//! - Curve: Quality@p for p = 0, 0.05, …, 1 (computed as `j/20`); APGR: trapezoid area under
//!   `(Quality@p − Quality@0)/(Quality@1 − Quality@0)`.
//!
//! Undefined values (k = 0, or small and large equally good on average for APGR) are `None`.
//! With a quality guard, `R` is the first `k` *eligible* records, so `|R|` may be below `k`:
//! MeanDelta and SevereLoss are then over `R`, HitRate still divides by `k`, and APGR is
//! normalized by the all-small and all-large qualities.

use serde::{Deserialize, Serialize};

use crate::error::{Result, RouteError};
use crate::rank::{
    CompensatedSum, average_ranks_from_order, budget_count, check_budget, check_finite, order_desc,
    pearson,
};

/// Number of curve points (p = 0, 0.05, …, 1).
pub const CURVE_POINTS: usize = 21;

/// The curve budgets `j/20`, j = 0..=20.
pub fn curve_budgets() -> Vec<f64> {
    (0..CURVE_POINTS).map(|j| j as f64 / (CURVE_POINTS - 1) as f64).collect()
}

/// What routing is measured against: per-record gains plus the aggregates every router shares
/// (gain ranks for Spearman, sorted gains for HitRate, all-small and all-large quality).
#[derive(Debug, Clone)]
pub struct Outcomes {
    gain: Vec<f64>,
    gain_ranks: Vec<f64>,
    gains_desc: Vec<f64>,
    sum_small: f64,
    sum_large: f64,
}

impl Outcomes {
    /// From per-record small and large scores (finite, same length, at least one record).
    pub fn new(score_small: &[f64], score_large: &[f64]) -> Result<Self> {
        if score_small.len() != score_large.len() {
            return Err(RouteError::Length {
                what: "score_large",
                got: score_large.len(),
                expected: score_small.len(),
            });
        }
        if score_small.is_empty() {
            return Err(RouteError::Empty);
        }
        check_finite(score_small)?;
        check_finite(score_large)?;
        let gain: Vec<f64> = score_large.iter().zip(score_small).map(|(l, s)| l - s).collect();
        let order = order_desc(&gain);
        let gain_ranks = average_ranks_from_order(&gain, &order);
        let gains_desc = order.iter().map(|&i| gain[i as usize]).collect();
        Ok(Outcomes {
            gain,
            gain_ranks,
            gains_desc,
            sum_small: crate::rank::sum(score_small),
            sum_large: crate::rank::sum(score_large),
        })
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.gain.len()
    }

    /// Always false (construction rejects empty inputs).
    pub fn is_empty(&self) -> bool {
        self.gain.is_empty()
    }

    /// Per-record gains `score_large − score_small`.
    pub fn gains(&self) -> &[f64] {
        &self.gain
    }

    /// Quality@0: mean `score_small`.
    pub fn small_only(&self) -> f64 {
        self.sum_small / self.len() as f64
    }

    /// Quality@1: mean `score_large`.
    pub fn large_only(&self) -> f64 {
        self.sum_large / self.len() as f64
    }

    /// The gains of records, by index (to turn a routed set of indices into its gains).
    pub fn gains_of(&self, routed: &[u32]) -> Vec<f64> {
        routed.iter().map(|&i| self.gain[i as usize]).collect()
    }

    /// HitRate@p (%) of a routed set, given its gains, for budget count `k` (`None` if k = 0).
    pub fn hit_rate(&self, routed_gains: &[f64], k: usize) -> Option<f64> {
        if k == 0 {
            return None;
        }
        let gk = self.gains_desc[k - 1];
        let above = self.gains_desc.partition_point(|&g| g > gk);
        let (mut in_a, mut in_b) = (0usize, 0usize);
        for &g in routed_gains {
            if g > gk {
                in_a += 1;
            } else if g == gk {
                in_b += 1;
            }
        }
        Some(100.0 * (in_a + in_b.min(k - above)) as f64 / k as f64)
    }

    /// MeanDelta@p: mean gain over the routed set (`None` if it is empty).
    pub fn mean_delta(&self, routed_gains: &[f64]) -> Option<f64> {
        if routed_gains.is_empty() {
            return None;
        }
        let mut s = CompensatedSum::default();
        routed_gains.iter().for_each(|&g| s.add(g));
        Some(s.value() / routed_gains.len() as f64)
    }

    /// SevereLoss@p (%): share of the routed set with `g < −δ` (`None` if it is empty).
    pub fn severe_loss(&self, routed_gains: &[f64], delta: f64) -> Option<f64> {
        if routed_gains.is_empty() {
            return None;
        }
        let n = routed_gains.iter().filter(|&&g| g < -delta).count();
        Some(100.0 * n as f64 / routed_gains.len() as f64)
    }

    /// Quality@p of routing exactly the records with these gains (mean over all records).
    pub fn quality(&self, routed_gains: &[f64]) -> f64 {
        let mut s = CompensatedSum::default();
        s.add(self.sum_small);
        routed_gains.iter().for_each(|&g| s.add(g));
        s.value() / self.len() as f64
    }

    /// Quality@p at every [`curve_budgets`] point, given the gains of the eligible records in
    /// routing order (one sequential pass).
    pub fn quality_curve(&self, eligible_gains: &[f64]) -> Vec<f64> {
        let n = self.len();
        let mut curve = Vec::with_capacity(CURVE_POINTS);
        let mut acc = CompensatedSum::default();
        acc.add(self.sum_small);
        let mut taken = 0;
        for p in curve_budgets() {
            let target = budget_count(p, n).min(eligible_gains.len());
            while taken < target {
                acc.add(eligible_gains[taken]);
                taken += 1;
            }
            curve.push(acc.value() / n as f64);
        }
        curve
    }

    /// Average-tie ranks of the gains (1 = highest), for Spearman.
    pub fn gain_ranks(&self) -> &[f64] {
        &self.gain_ranks
    }

    /// APGR of a quality curve sampled at [`curve_budgets`] (`None` if Quality@1 = Quality@0).
    pub fn apgr(&self, curve: &[f64]) -> Option<f64> {
        apgr(&curve_budgets(), curve, self.small_only(), self.large_only())
    }
}

/// Trapezoid area under `(q − q0)/(q1 − q0)` over `budgets`; `None` when `q1` and `q0` are
/// equal up to rounding (relative 1e-12), where the normalization is undefined.
pub fn apgr(budgets: &[f64], curve: &[f64], q0: f64, q1: f64) -> Option<f64> {
    assert_eq!(budgets.len(), curve.len());
    let span = q1 - q0;
    if span.abs() <= 1e-12 * q0.abs().max(q1.abs()).max(1.0) {
        return None;
    }
    let y: Vec<f64> = curve.iter().map(|q| (q - q0) / span).collect();
    let mut area = 0.0;
    for j in 1..budgets.len() {
        area += (budgets[j] - budgets[j - 1]) * (y[j - 1] + y[j]) / 2.0;
    }
    Some(area)
}

/// A router's ordering of the records: who is routed first, the average-tie ranks of its
/// scores (for Spearman) and how many records are eligible (all, unless a guard excludes some).
#[derive(Debug, Clone)]
pub struct Ranking {
    order: Vec<u32>,
    ranks: Vec<f64>,
    eligible: usize,
}

impl Ranking {
    /// From router scores (higher = route first). O(N log N).
    pub fn from_scores(scores: &[f64]) -> Result<Self> {
        check_finite(scores)?;
        let order = order_desc(scores);
        let ranks = average_ranks_from_order(scores, &order);
        let eligible = order.len();
        Ok(Ranking { order, ranks, eligible })
    }

    /// From a permutation listing records best first, as tie-free scores would give (the
    /// random router: O(N), no sort).
    pub fn from_permutation(order: Vec<u32>) -> Self {
        let mut ranks = vec![0.0; order.len()];
        for (pos, &i) in order.iter().enumerate() {
            ranks[i as usize] = (pos + 1) as f64;
        }
        let eligible = order.len();
        Ranking { order, ranks, eligible }
    }

    /// Applies a quality guard: guarded records (`guarded[i]`) are never routed, the next
    /// best eligible ones fill the budget instead. Ranks (Spearman) are left unchanged.
    pub fn with_guard(mut self, guarded: &[bool]) -> Self {
        assert_eq!(guarded.len(), self.ranks.len());
        let (mut eligible, blocked): (Vec<u32>, Vec<u32>) =
            self.order.iter().partition(|&&i| !guarded[i as usize]);
        self.eligible = eligible.len();
        eligible.extend(blocked);
        self.order = eligible;
        self
    }

    /// Records in routing order (eligible ones first).
    pub fn order(&self) -> &[u32] {
        &self.order
    }

    /// The routed set for a budget count `k`: the first `min(k, eligible)` records.
    pub fn routed(&self, k: usize) -> &[u32] {
        &self.order[..k.min(self.eligible)]
    }

    /// Number of records a guard leaves eligible.
    pub fn eligible(&self) -> usize {
        self.eligible
    }
}

/// Every metric of one router at one budget, plus its quality curve. Serialized as one router's
/// line of `REPORT.json` (see `RouterReport` in `report.rs`): `None` is `null` (undefined at
/// this budget), and the curve is left out (the report keeps every router's curve under
/// `curve`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouterMetrics {
    /// Spearman correlation of router scores with gains.
    pub spearman: f64,
    /// HitRate@p in percent.
    pub hit_rate: Option<f64>,
    /// MeanDelta@p in score units.
    pub mean_delta: Option<f64>,
    /// SevereLoss@p in percent.
    pub severe_loss: Option<f64>,
    /// Quality@p.
    pub quality: f64,
    /// Area under the normalized quality curve.
    pub apgr: Option<f64>,
    /// `|R|` (= k unless a guard ran out of eligible records).
    pub routed: usize,
    /// Quality@p at [`curve_budgets`] (not serialized).
    #[serde(skip)]
    pub curve: Vec<f64>,
}

/// Measures a ranking against outcomes at budget `p` with severe-loss threshold `delta`.
pub fn evaluate(
    outcomes: &Outcomes,
    ranking: &Ranking,
    budget: f64,
    severe_delta: f64,
) -> Result<RouterMetrics> {
    let n = outcomes.len();
    if ranking.order.len() != n {
        return Err(RouteError::Length {
            what: "router scores",
            got: ranking.order.len(),
            expected: n,
        });
    }
    let spearman = pearson(&ranking.ranks, &outcomes.gain_ranks);
    // One gather into routing order; every metric below is then a sequential pass.
    let eligible_gains = outcomes.gains_of(&ranking.order[..ranking.eligible]);
    evaluate_in_order(outcomes, spearman, &eligible_gains, budget, severe_delta)
}

/// The metrics of a router given its Spearman correlation and the gains of its eligible
/// records in routing order (all records unless a guard blocks some): the routed set at any
/// budget is a prefix of `eligible_gains`.
pub fn evaluate_in_order(
    outcomes: &Outcomes,
    spearman: f64,
    eligible_gains: &[f64],
    budget: f64,
    severe_delta: f64,
) -> Result<RouterMetrics> {
    check_budget(budget)?;
    let n = outcomes.len();
    if eligible_gains.len() > n {
        return Err(RouteError::Length {
            what: "eligible gains",
            got: eligible_gains.len(),
            expected: n,
        });
    }
    let k = budget_count(budget, n);
    let routed = &eligible_gains[..k.min(eligible_gains.len())];
    let curve = outcomes.quality_curve(eligible_gains);
    Ok(RouterMetrics {
        spearman,
        hit_rate: outcomes.hit_rate(routed, k),
        mean_delta: outcomes.mean_delta(routed),
        severe_loss: outcomes.severe_loss(routed, severe_delta),
        quality: outcomes.quality(routed),
        apgr: outcomes.apgr(&curve),
        routed: routed.len(),
        curve,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approx(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn hand_example() {
        // gains: 3, 1, 1, 0, -2 ; router prefers record 4 (g=-2), then 1, then 2.
        let small = [0.0, 1.0, 2.0, 3.0, 4.0];
        let large = [3.0, 2.0, 3.0, 3.0, 2.0];
        let o = Outcomes::new(&small, &large).unwrap();
        let s = [0.1, 0.5, 0.4, 0.0, 0.9];
        let r = Ranking::from_scores(&s).unwrap();
        // p = 0.4 -> k = floor(2.5) = 2 -> R = {4, 1}; g_k = 1, A = {0}, B = {1, 2}.
        let m = evaluate(&o, &r, 0.4, 1.0).unwrap();
        assert_eq!(m.routed, 2);
        // |R∩A| = 0, |R∩B| = 1, k - |A| = 1 -> 50%.
        assert!(approx(m.hit_rate.unwrap(), 50.0));
        assert!(approx(m.mean_delta.unwrap(), (-2.0 + 1.0) / 2.0));
        assert!(approx(m.severe_loss.unwrap(), 50.0));
        assert!(approx(m.quality, (0.0 + 2.0 + 2.0 + 3.0 + 2.0) / 5.0));
        assert_eq!(m.curve.len(), CURVE_POINTS);
        assert!(approx(m.curve[0], 2.0) && approx(m.curve[20], 13.0 / 5.0));
        let oracle = Ranking::from_scores(o.gains()).unwrap();
        let m = evaluate(&o, &oracle, 0.4, 1.0).unwrap();
        assert_eq!(m.hit_rate, Some(100.0));
        assert!(approx(m.spearman, 1.0));
    }

    #[test]
    fn undefined_values_are_none() {
        let o = Outcomes::new(&[1.0, 2.0], &[1.0, 2.0]).unwrap();
        let r = Ranking::from_scores(&[0.0, 1.0]).unwrap();
        let m = evaluate(&o, &r, 0.0, 0.1).unwrap();
        assert_eq!((m.hit_rate, m.mean_delta, m.severe_loss, m.apgr), (None, None, None, None));
        assert_eq!(m.routed, 0);
        assert!(Outcomes::new(&[], &[]).is_err());
        assert!(evaluate(&o, &r, 1.5, 0.1).is_err());
    }

    #[test]
    fn guard_skips_and_refills() {
        let o = Outcomes::new(&[0.0; 4], &[4.0, 3.0, 2.0, 1.0]).unwrap();
        let r = Ranking::from_scores(&[4.0, 3.0, 2.0, 1.0])
            .unwrap()
            .with_guard(&[false, true, false, true]);
        assert_eq!(r.routed(2), &[0, 2]);
        assert_eq!(r.routed(4), &[0, 2]);
        let m = evaluate(&o, &r, 0.5, 0.1).unwrap();
        assert_eq!(m.routed, 2);
        assert!(approx(m.hit_rate.unwrap(), 50.0));
        assert!(approx(m.mean_delta.unwrap(), 3.0));
        // The curve saturates at the eligible records: 6/4 at p=1.
        assert!(approx(*m.curve.last().unwrap(), 1.5));
    }
}
