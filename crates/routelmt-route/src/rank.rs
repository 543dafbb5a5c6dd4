//! Orders, ranks and correlations (`docs/metrics.md`, Metrics): `k = floor(p·N + 0.5)`, the routed set
//! is the `k` highest scores with ties broken by input order (earlier first), Spearman is the
//! Pearson correlation of average-tie ranks and 0 when either side is constant.

use crate::error::{Result, RouteError};

/// Checks that a budget is a fraction in `[0, 1]`.
pub fn check_budget(p: f64) -> Result<()> {
    if (0.0..=1.0).contains(&p) { Ok(()) } else { Err(RouteError::Budget(p)) }
}

/// The number of records a budget `p` routes out of `n`: `floor(p·n + 0.5)`, in f64 exactly
/// as written so that other implementations (the Python goldens) agree on every edge.
pub fn budget_count(p: f64, n: usize) -> usize {
    ((p * n as f64 + 0.5).floor() as usize).min(n)
}

/// Checks that every score is finite.
pub fn check_finite(scores: &[f64]) -> Result<()> {
    match scores.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(RouteError::NonFiniteScore { index, value: scores[index] }),
        None => Ok(()),
    }
}

/// A sort key whose ascending order is the descending order of `x`, with `-0.0 == 0.0` (a
/// tie, as in Python) and NaN never expected (scores are checked finite first).
#[inline]
fn desc_key(x: f64) -> u64 {
    let bits = (x + 0.0).to_bits(); // `+ 0.0` turns -0.0 into +0.0
    let ascending = if bits >> 63 == 1 { !bits } else { bits | (1 << 63) };
    !ascending
}

/// Indices sorted by score, highest first, ties by index (earlier first). O(N log N).
pub fn order_desc(scores: &[f64]) -> Vec<u32> {
    assert!(scores.len() <= u32::MAX as usize, "at most 2^32 - 1 records");
    let mut keyed: Vec<(u64, u32)> =
        scores.iter().enumerate().map(|(i, &x)| (desc_key(x), i as u32)).collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// Average-tie ranks (1 = highest) of `values`, given `order` = [`order_desc`] of them.
pub fn average_ranks_from_order(values: &[f64], order: &[u32]) -> Vec<f64> {
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let v = values[order[start] as usize];
        let mut end = start + 1;
        while end < order.len() && values[order[end] as usize] == v {
            end += 1;
        }
        // Positions start..end hold ranks start+1..=end; their mean is (start + 1 + end) / 2.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i as usize] = rank;
        }
        start = end;
    }
    ranks
}

/// Average-tie ranks (1 = highest).
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    average_ranks_from_order(values, &order_desc(values))
}

/// Pearson correlation; 0 when either side is constant or there are fewer than 2 values.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len());
    pearson_by(x.len(), |i| (x[i], y[i]))
}

/// Pearson correlation of the pairs `pair(0..n)` (two passes: means, then centred sums);
/// 0 when either side is constant or `n < 2`.
pub fn pearson_by(n: usize, pair: impl Fn(usize) -> (f64, f64)) -> f64 {
    if n < 2 {
        return 0.0;
    }
    let (mut sx, mut sy) = (0.0, 0.0);
    for i in 0..n {
        let (a, b) = pair(i);
        sx += a;
        sy += b;
    }
    let (mx, my) = (sx / n as f64, sy / n as f64);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (a, b) = pair(i);
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return 0.0;
    }
    // sqrt(fl(a·a)) = a exactly, so identical rank vectors give exactly 1; the clamp guards
    // the last bit elsewhere.
    (sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0)
}

/// Spearman's rank correlation with average-tie ranks (scipy's `spearmanr`), 0 when either
/// side is constant.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&average_ranks(x), &average_ranks(y))
}

/// Neumaier's compensated sum: sums of a million gains stay exact to ~1 ulp, so metrics agree
/// with `math.fsum` references.
#[derive(Debug, Default, Clone, Copy)]
pub struct CompensatedSum {
    sum: f64,
    compensation: f64,
}

impl CompensatedSum {
    /// Adds a value.
    #[inline]
    pub fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }

    /// The sum so far.
    #[inline]
    pub fn value(&self) -> f64 {
        self.sum + self.compensation
    }
}

/// Compensated sum of a slice.
pub fn sum(xs: &[f64]) -> f64 {
    let mut s = CompensatedSum::default();
    xs.iter().for_each(|&x| s.add(x));
    s.value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_count_rounds_half_up() {
        assert_eq!(budget_count(0.3, 1875), 563); // 562.5 -> 563
        assert_eq!(budget_count(0.25, 10), 3); // 2.5 -> 3
        assert_eq!(budget_count(0.0, 10), 0);
        assert_eq!(budget_count(1.0, 10), 10);
        assert_eq!(budget_count(0.04, 10), 0);
        assert_eq!(budget_count(0.05, 10), 1);
        assert!(check_budget(1.5).is_err() && check_budget(f64::NAN).is_err());
    }

    #[test]
    fn order_breaks_ties_by_input_order_and_treats_signed_zero_as_tie() {
        let s = [1.0, 3.0, -0.0, 3.0, 0.0, -2.0, f64::MAX, f64::MIN];
        assert_eq!(order_desc(&s), vec![6, 1, 3, 0, 2, 4, 5, 7]);
    }

    #[test]
    fn average_ranks_match_hand_values() {
        // Descending ranks of [10, 20, 20, 5]: 20s share ranks 1 and 2.
        assert_eq!(average_ranks(&[10.0, 20.0, 20.0, 5.0]), vec![3.0, 1.5, 1.5, 4.0]);
        assert_eq!(average_ranks(&[0.0, -0.0, 0.0]), vec![2.0, 2.0, 2.0]);
    }

    #[test]
    fn spearman_basics() {
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), 1.0);
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0);
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[3.0, 2.0, 1.0]), 0.0);
        assert_eq!(spearman(&[1.0], &[2.0]), 0.0);
        assert_eq!(spearman(&[], &[]), 0.0);
    }

    #[test]
    fn compensated_sum_is_exact_where_naive_is_not() {
        let xs = [1e16, 1.0, -1e16, 1.0];
        assert_eq!(sum(&xs), 2.0);
    }
}
