//! Property tests of metrics and policies: invariances the contract implies, on random
//! inputs with many ties.

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::controller::{BudgetController, ControllerConfig};
use crate::jsonline::set_fields;
use crate::metrics::{Outcomes, Ranking, evaluate};
use crate::policy::{Calibration, Direction, route_by_threshold, top_p};
use crate::rank::{budget_count, spearman};
use crate::rng;

/// Scores with plenty of ties: small integers, sometimes scaled to 3 decimals.
fn tied_scores(n: std::ops::Range<usize>) -> impl Strategy<Value = Vec<f64>> {
    (proptest::collection::vec(-20i32..20, n), prop::bool::ANY).prop_map(|(v, scaled)| {
        v.into_iter().map(|x| if scaled { x as f64 * 0.125 } else { x as f64 }).collect()
    })
}

/// Strictly increasing maps that are exact (or at least order-preserving without merging
/// values) on the scores above.
fn monotone(kind: u8, x: f64) -> f64 {
    match kind % 4 {
        0 => 3.0 * x - 7.0,
        1 => x * x * x,
        2 => (x / 10.0).exp(),
        _ => x.atan(),
    }
}

fn routed_set(scores: &[f64], p: f64) -> Vec<usize> {
    top_p(scores, p, None)
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_large())
        .map(|(i, _)| i)
        .collect()
}

proptest! {
    #[test]
    fn monotone_transforms_keep_spearman_and_the_routed_set(
        s in tied_scores(1..120),
        seed in any::<u64>(),
        kind in 0u8..4,
        p in 0.0f64..=1.0,
    ) {
        let mut r = rng::seeded(seed);
        let g: Vec<f64> = s.iter().map(|_| (rng::below(&mut r, 7) as f64) - 3.0).collect();
        let t: Vec<f64> = s.iter().map(|&x| monotone(kind, x)).collect();
        prop_assert_eq!(spearman(&s, &g), spearman(&t, &g));
        prop_assert_eq!(routed_set(&s, p), routed_set(&t, p));
        // And on the gain side: Spearman sees ranks only.
        let tg: Vec<f64> = g.iter().map(|&x| monotone(kind, x)).collect();
        prop_assert_eq!(spearman(&s, &g), spearman(&s, &tg));
    }

    #[test]
    fn routed_set_has_exactly_k_and_breaks_ties_by_input_order(
        s in tied_scores(0..150),
        p in 0.0f64..=1.0,
    ) {
        let set = routed_set(&s, p);
        prop_assert_eq!(set.len(), budget_count(p, s.len()));
        let routed: Vec<bool> = (0..s.len()).map(|i| set.contains(&i)).collect();
        for j in 0..s.len() {
            if !routed[j] { continue; }
            for i in 0..s.len() {
                // Anything better, or equal and earlier, than a routed record is routed too.
                if s[i] > s[j] || (s[i] == s[j] && i < j) {
                    prop_assert!(routed[i], "{i} should be routed before {j}");
                }
            }
        }
    }

    #[test]
    fn metrics_stay_in_range_and_the_gain_oracle_dominates(
        s in tied_scores(1..100),
        seed in any::<u64>(),
        p in 0.0f64..=1.0,
    ) {
        let mut r = rng::seeded(seed);
        let small: Vec<f64> = s.iter().map(|_| -(rng::below(&mut r, 4) as f64)).collect();
        let large: Vec<f64> = s.iter().map(|_| -(rng::below(&mut r, 4) as f64)).collect();
        let o = Outcomes::new(&small, &large).unwrap();
        let m = evaluate(&o, &Ranking::from_scores(&s).unwrap(), p, 0.5).unwrap();
        let best = evaluate(&o, &Ranking::from_scores(o.gains()).unwrap(), p, 0.5).unwrap();
        prop_assert_eq!(m.routed, budget_count(p, s.len()));
        prop_assert!((-1.0..=1.0).contains(&m.spearman));
        if let Some(h) = m.hit_rate { prop_assert!((0.0..=100.0 + 1e-9).contains(&h)); }
        if let Some(l) = m.severe_loss { prop_assert!((0.0..=100.0).contains(&l)); }
        prop_assert_eq!(best.hit_rate, if m.routed > 0 { Some(100.0) } else { None });
        for (a, b) in m.curve.iter().zip(&best.curve) {
            prop_assert!(a <= &(b + 1e-12), "oracle curve must dominate: {a} > {b}");
        }
        prop_assert!((m.curve[0] - o.small_only()).abs() < 1e-12);
        prop_assert!((m.curve[20] - o.large_only()).abs() < 1e-12);
    }

    #[test]
    fn a_guard_never_routes_a_blocked_record_nor_exceeds_the_budget(
        s in tied_scores(1..100),
        mask in proptest::collection::vec(prop::bool::ANY, 100),
        p in 0.0f64..=1.0,
    ) {
        let blocked = &mask[..s.len()];
        let routes = top_p(&s, p, Some(blocked)).unwrap();
        let k = budget_count(p, s.len());
        let eligible = blocked.iter().filter(|b| !**b).count();
        let n_large = routes.iter().filter(|r| r.is_large()).count();
        prop_assert_eq!(n_large, k.min(eligible));
        for (r, b) in routes.iter().zip(blocked) {
            prop_assert!(!(r.is_large() && *b));
        }
    }

    #[test]
    fn controller_never_leaves_its_band(
        kind in 0u8..5,
        seed in any::<u64>(),
        p in 0.0f64..=1.0,
        window in 50usize..400,
    ) {
        let mut r = rng::seeded(seed);
        let n = 3 * window;
        // Friendly and adversarial streams: noise, sorted up, sorted down, constant, bursts.
        let stream: Vec<f64> = (0..n).map(|t| match kind {
            0 => rng::normal(&mut r),
            1 => t as f64,
            2 => -(t as f64),
            3 => 1.0,
            _ => if (t / 37) % 2 == 0 { 10.0 + rng::unit(&mut r) } else { rng::unit(&mut r) },
        }).collect();
        let mut cfg = ControllerConfig::new(p, window);
        cfg.tolerance = 0.02f64.max(1.0 / window as f64);
        let mut c = BudgetController::new(cfg).unwrap();
        let (lo, hi) = c.band();
        let large: Vec<bool> = stream.iter().map(|&s| c.decide(s).route.is_large()).collect();
        let mut count = large[..window].iter().filter(|&&x| x).count();
        for t in window..=n {
            prop_assert!(lo <= count && count <= hi, "window ending {t}: {count} not in [{lo}, {hi}]");
            prop_assert!(count as f64 <= (p + cfg.tolerance) * window as f64 + 1e-9);
            if t < n {
                count = count + usize::from(large[t]) - usize::from(large[t - window]);
            }
        }
    }

    #[test]
    fn set_fields_keeps_every_other_field(
        keys in proptest::collection::btree_map("[a-z.\"\\\\é]{1,6}", -1000i64..1000, 0..8),
        spaced in prop::bool::ANY,
        route_large in prop::bool::ANY,
    ) {
        let obj: serde_json::Map<String, Value> =
            keys.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let line = if spaced {
            serde_json::to_string_pretty(&Value::Object(obj.clone())).unwrap().replace('\n', " ")
        } else {
            serde_json::to_string(&Value::Object(obj.clone())).unwrap()
        };
        let route = if route_large { "large" } else { "small" };
        let out = set_fields(&line, &[("route", json!(route))]).unwrap();
        let back: serde_json::Map<String, Value> = serde_json::from_str(&out).unwrap();
        prop_assert_eq!(&back["route"], &json!(route));
        for (k, v) in &obj {
            if k != "route" { prop_assert_eq!(&back[k], v); }
        }
        if !obj.contains_key("route") {
            let head = line.trim_end_matches('}').trim_end();
            prop_assert!(out.starts_with(head), "{out} should start with {head}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn a_calibrated_threshold_hits_its_share_on_fresh_draws(
        seed in any::<u64>(),
        p in 0.05f64..0.95,
        mean in -5.0f64..5.0,
        sd in 0.1f64..4.0,
    ) {
        let mut r = rng::seeded(seed);
        let mut draw = || mean + sd * rng::normal(&mut r);
        let held_out: Vec<f64> = (0..4000).map(|_| draw()).collect();
        let fresh: Vec<f64> = (0..20_000).map(|_| draw()).collect();
        let cal = Calibration::calibrate("s", Direction::Desc, &held_out, p, 200, seed).unwrap();
        prop_assert!(cal.share <= p + 0.5 / 4000.0 + 1e-12);
        let share = fresh.iter().filter(|&&s| route_by_threshold(s, cal.threshold).is_large()).count()
            as f64 / fresh.len() as f64;
        // Binomial noise of calibration (n = 4000) and of the fresh draw (n = 20000), 4 sigma.
        let sigma = (p * (1.0 - p)).sqrt() * (1.0 / 4000f64.sqrt() + 1.0 / 20_000f64.sqrt());
        prop_assert!((share - p).abs() < 4.0 * sigma, "share {share} vs p {p}");
        prop_assert!(cal.share_ci95[0] <= cal.share && cal.share <= cal.share_ci95[1]);
    }
}
