//! Evaluating a list of routers on one dataset: the `REPORT.json` structure
//! (`{"n", "budget", "severe_delta", "routers": [...], "curve": {"budgets": [...], NAME: [...]}}`)
//! and its markdown table.

use std::fmt::Write as _;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::baselines::{Baseline, RouterSpec};
use crate::dataset::Dataset;
use crate::error::{Result, RouteError};
use crate::metrics::{
    Outcomes, Ranking, RouterMetrics, curve_budgets, evaluate, evaluate_in_order,
};
use crate::rank::check_budget;
use crate::rank::pearson_by;
use crate::rng;

/// Settings of an evaluation run.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalSettings {
    /// The budget `p` of the headline metrics.
    pub budget: f64,
    /// δ of SevereLoss@p (a routed record with `g < −δ` is a severe loss).
    pub severe_delta: f64,
    /// Seed of the random router.
    pub seed: u64,
    /// How many random draws the `random` router averages over.
    pub random_repeats: usize,
}

impl Default for EvalSettings {
    fn default() -> Self {
        EvalSettings { budget: 0.3, severe_delta: 0.1, seed: 0, random_repeats: 100 }
    }
}

/// One router's line of the report: its name, then its metrics at the budget (`None`
/// serializes as `null`: undefined at this budget; the curve goes under the report's `curve`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouterReport {
    /// The router's name as given.
    pub name: String,
    /// Its metrics (Spearman, HitRate@p, MeanDelta@p, SevereLoss@p, Quality@p, APGR, routed).
    #[serde(flatten)]
    pub metrics: RouterMetrics,
}

/// Quality curves: the budgets and one series per router, in router order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Curve {
    /// p = 0, 0.05, …, 1.
    pub budgets: Vec<f64>,
    /// `(router name, Quality@p per budget)`.
    pub series: Vec<(String, Vec<f64>)>,
}

impl Serialize for Curve {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.series.len() + 1))?;
        map.serialize_entry("budgets", &self.budgets)?;
        for (name, values) in &self.series {
            map.serialize_entry(name, values)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Curve {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct CurveVisitor;
        impl<'de> Visitor<'de> for CurveVisitor {
            type Value = Curve;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object with `budgets` and one array per router")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Curve, A::Error> {
                let mut curve = Curve::default();
                let mut budgets = None;
                while let Some(key) = m.next_key::<String>()? {
                    let values: Vec<f64> = m.next_value()?;
                    if key == "budgets" {
                        budgets = Some(values);
                    } else {
                        curve.series.push((key, values));
                    }
                }
                curve.budgets = budgets.ok_or_else(|| de::Error::missing_field("budgets"))?;
                Ok(curve)
            }
        }
        d.deserialize_map(CurveVisitor)
    }
}

/// `REPORT.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Number of records.
    pub n: usize,
    /// The budget p.
    pub budget: f64,
    /// δ of SevereLoss.
    pub severe_delta: f64,
    /// One line per router, in the order asked.
    pub routers: Vec<RouterReport>,
    /// Quality curves.
    pub curve: Curve,
}

/// A report plus the two reference qualities the table and plot show.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The report.
    pub report: Report,
    /// Quality when nothing is routed (mean `score_small`).
    pub small_only: f64,
    /// Quality when everything is routed (mean `score_large`).
    pub large_only: f64,
}

/// Evaluates every router on `data`.
pub fn evaluate_routers(
    data: &Dataset,
    routers: &[RouterSpec],
    settings: &EvalSettings,
) -> Result<Evaluation> {
    check_budget(settings.budget)?;
    if !(settings.severe_delta.is_finite()) {
        return Err(RouteError::Invalid(format!(
            "severe delta must be a finite number, got {}",
            settings.severe_delta
        )));
    }
    let outcomes = Outcomes::new(&data.score_small, &data.score_large)?;
    let mut lines = Vec::with_capacity(routers.len());
    let mut series = Vec::with_capacity(routers.len());
    for spec in routers {
        let blocked = spec.blocked(data)?;
        let mut metrics = match spec.scores(data)? {
            Some(scores) => {
                let mut ranking = Ranking::from_scores(&scores)?;
                if let Some(b) = &blocked {
                    ranking = ranking.with_guard(b);
                }
                evaluate(&outcomes, &ranking, settings.budget, settings.severe_delta)?
            }
            None => {
                debug_assert_eq!(spec.baseline, Baseline::Random);
                random_mean(&outcomes, blocked.as_deref(), settings)?
            }
        };
        series.push((spec.name.clone(), std::mem::take(&mut metrics.curve)));
        lines.push(RouterReport { name: spec.name.clone(), metrics });
    }
    Ok(Evaluation {
        report: Report {
            n: data.len(),
            budget: settings.budget,
            severe_delta: settings.severe_delta,
            routers: lines,
            curve: Curve { budgets: curve_budgets(), series },
        },
        small_only: outcomes.small_only(),
        large_only: outcomes.large_only(),
    })
}

/// The random router: every metric (and every curve point) averaged over
/// `settings.random_repeats` seeded draws. A uniform random permutation is exactly the order
/// tie-free uniform scores give, so each draw shuffles the records' `(gain, gain rank,
/// blocked)` in place: routing order is then array order, the score rank of position `j` is
/// `j + 1`, and every metric is a sequential pass (no sort, no random gathers).
fn random_mean(
    outcomes: &Outcomes,
    blocked: Option<&[bool]>,
    settings: &EvalSettings,
) -> Result<RouterMetrics> {
    #[derive(Clone, Copy)]
    struct Item {
        gain: f64,
        gain_rank: f64,
        blocked: bool,
    }
    let repeats = settings.random_repeats;
    if repeats == 0 {
        return Err(RouteError::Invalid("random repeats must be at least 1".into()));
    }
    let n = outcomes.len();
    let mut items: Vec<Item> = (0..n)
        .map(|i| Item {
            gain: outcomes.gains()[i],
            gain_rank: outcomes.gain_ranks()[i],
            blocked: blocked.is_some_and(|b| b[i]),
        })
        .collect();
    let mut rng = rng::seeded(settings.seed);
    let mut eligible = Vec::with_capacity(n);
    let mut acc: Option<RouterMetrics> = None;
    for _ in 0..repeats {
        // Shuffling the previous permutation again gives a fresh uniform permutation.
        rng::shuffle(&mut rng, &mut items);
        let spearman = pearson_by(n, |j| ((j + 1) as f64, items[j].gain_rank));
        eligible.clear();
        eligible.extend(items.iter().filter(|it| !it.blocked).map(|it| it.gain));
        let m = evaluate_in_order(
            outcomes,
            spearman,
            &eligible,
            settings.budget,
            settings.severe_delta,
        )?;
        acc = Some(match acc {
            None => m,
            Some(mut a) => {
                a.spearman += m.spearman;
                add_opt(&mut a.hit_rate, m.hit_rate);
                add_opt(&mut a.mean_delta, m.mean_delta);
                add_opt(&mut a.severe_loss, m.severe_loss);
                a.quality += m.quality;
                add_opt(&mut a.apgr, m.apgr);
                a.curve.iter_mut().zip(&m.curve).for_each(|(x, y)| *x += y);
                a
            }
        });
    }
    let mut a = acc.expect("repeats >= 1");
    let r = repeats as f64;
    a.spearman /= r;
    let optional = [&mut a.hit_rate, &mut a.mean_delta, &mut a.severe_loss, &mut a.apgr];
    optional.into_iter().flatten().for_each(|x| *x /= r);
    a.quality /= r;
    a.curve.iter_mut().for_each(|x| *x /= r);
    Ok(a)
}

fn add_opt(a: &mut Option<f64>, b: Option<f64>) {
    if let (Some(x), Some(y)) = (a.as_mut(), b) {
        *x += y;
    }
}

/// `0.3` → `30`, `0.125` → `12.5` (no `30.000000000000004`).
fn percent_label(p: f64) -> String {
    let s = format!("{:.4}", p * 100.0);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "n/a".to_string(), |x| format!("{x:.decimals$}"))
}

/// The report as a markdown table (the headline metrics at the budget), with the small-only
/// and large-only reference qualities underneath.
pub fn markdown_table(eval: &Evaluation) -> String {
    let r = &eval.report;
    let pct = percent_label(r.budget);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| router | Spearman | HitRate@{pct}% | MeanDelta@{pct}% | SevereLoss@{pct}% (δ={}) | Quality@{pct}% | APGR | routed |",
        r.severe_delta
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for line in &r.routers {
        let m = &line.metrics;
        let _ = writeln!(
            out,
            "| {} | {:.4} | {} | {} | {} | {:.4} | {} | {} |",
            line.name.replace('|', "\\|"),
            m.spearman,
            fmt_opt(m.hit_rate, 2),
            fmt_opt(m.mean_delta, 4),
            fmt_opt(m.severe_loss, 2),
            m.quality,
            fmt_opt(m.apgr, 4),
            m.routed,
        );
    }
    let _ = writeln!(
        out,
        "\nN = {}, budget p = {} ({} routed); small only: Quality {:.4}; large only: Quality {:.4}.",
        r.n,
        r.budget,
        crate::rank::budget_count(r.budget, r.n),
        eval.small_only,
        eval.large_only
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baselines::parse_router_list;
    use crate::dataset::Needs;

    fn data() -> (Dataset, Vec<RouterSpec>) {
        let routers =
            parse_router_list("random,length,oracle-gain,oracle-quality,field:q:asc").unwrap();
        let mut needs = Needs::default();
        routers.iter().for_each(|r| r.add_needs(&mut needs));
        let mut jsonl = String::new();
        for i in 0..40 {
            let small = -((i % 7) as f64);
            let large = -(((i * 3) % 5) as f64);
            let src = "x".repeat(1 + (i * 13) % 17);
            jsonl.push_str(&format!(
                "{{\"src\": \"{src}\", \"score_small\": {small}, \"score_large\": {large}, \"q\": {}}}\n",
                -small + 0.5 * (i % 3) as f64
            ));
        }
        (Dataset::from_reader(jsonl.as_bytes(), &needs).unwrap(), routers)
    }

    #[test]
    fn report_has_the_contract_shape() {
        let (d, routers) = data();
        let eval = evaluate_routers(&d, &routers, &EvalSettings::default()).unwrap();
        let v = serde_json::to_value(&eval.report).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 5);
        for k in ["n", "budget", "severe_delta", "routers", "curve"] {
            assert!(v.get(k).is_some(), "{k}");
        }
        let line = v["routers"][0].as_object().unwrap();
        let mut names: Vec<&str> = line.keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "apgr",
                "hit_rate",
                "mean_delta",
                "name",
                "quality",
                "routed",
                "severe_loss",
                "spearman"
            ]
        );
        let curve = serde_json::to_string(&eval.report.curve).unwrap();
        assert!(curve.starts_with("{\"budgets\":[0.0,0.05,"), "{curve}");
        assert_eq!(v["curve"]["field:q:asc"].as_array().unwrap().len(), 21);
        // Field order of a router line, as written.
        let json = serde_json::to_string(&eval.report.routers[0]).unwrap();
        let keys = [
            "name",
            "spearman",
            "hit_rate",
            "mean_delta",
            "severe_loss",
            "quality",
            "apgr",
            "routed",
        ];
        let at: Vec<usize> =
            keys.iter().map(|k| json.find(&format!("\"{k}\":")).unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{json}");
        // serde_json parses with correct rounding (`float_roundtrip`): the round trip is exact,
        // as with Python's json, the usual consumer.
        let back: Report =
            serde_json::from_str(&serde_json::to_string(&eval.report).unwrap()).unwrap();
        assert_eq!(back, eval.report);
        assert_eq!(back.routers.len(), eval.report.routers.len());
        for (a, b) in back.routers.iter().zip(&eval.report.routers) {
            assert_eq!((&a.name, a.metrics.routed), (&b.name, b.metrics.routed));
            assert!((a.metrics.spearman - b.metrics.spearman).abs() < 1e-14);
            assert!(
                (a.metrics.severe_loss.unwrap() - b.metrics.severe_loss.unwrap()).abs() < 1e-12
            );
        }
        let names = |r: &Report| r.curve.series.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&back), names(&eval.report), "curve keys keep router order");
        assert_eq!(eval.report.routers[2].metrics.hit_rate, Some(100.0));
        assert_eq!(eval.report.routers[0].metrics.routed, 12);
    }

    /// The fast random path (shuffled items, sequential passes) equals the generic evaluation
    /// of the same permutation, with and without a guard.
    #[test]
    fn random_path_equals_generic_evaluation_of_the_same_permutation() {
        let (d, _) = data();
        let outcomes = Outcomes::new(&d.score_small, &d.score_large).unwrap();
        let blocked: Vec<bool> = (0..d.len()).map(|i| i % 4 == 1).collect();
        for guard in [None, Some(blocked.as_slice())] {
            for seed in 0..5 {
                let s = EvalSettings { random_repeats: 1, seed, ..Default::default() };
                let fast = random_mean(&outcomes, guard, &s).unwrap();
                let mut order: Vec<u32> = (0..d.len() as u32).collect();
                rng::shuffle(&mut rng::seeded(seed), &mut order);
                let mut ranking = Ranking::from_permutation(order);
                if let Some(b) = guard {
                    ranking = ranking.with_guard(b);
                }
                let slow = evaluate(&outcomes, &ranking, s.budget, s.severe_delta).unwrap();
                assert_eq!(fast, slow, "seed {seed}, guard {}", guard.is_some());
            }
        }
    }

    #[test]
    fn random_mean_is_reproducible_and_unbiased() {
        let (d, routers) = data();
        let s = EvalSettings { random_repeats: 400, seed: 5, ..Default::default() };
        let a = evaluate_routers(&d, &routers[..1], &s).unwrap();
        let b = evaluate_routers(&d, &routers[..1], &s).unwrap();
        assert_eq!(a, b);
        let c =
            evaluate_routers(&d, &routers[..1], &EvalSettings { seed: 6, ..s.clone() }).unwrap();
        assert_ne!(a, c);

        // Distinct gains: E[HitRate] = 100·k/N and E[MeanDelta] = mean gain, exactly.
        let jsonl: String =
            (0..50).map(|i| format!("{{\"score_small\": {}, \"score_large\": 0}}\n", -i)).collect();
        let d = Dataset::from_reader(jsonl.as_bytes(), &Needs::default()).unwrap();
        let a = evaluate_routers(&d, &routers[..1], &s).unwrap();
        let line = &a.report.routers[0].metrics;
        assert_eq!(line.routed, 15);
        assert!((line.hit_rate.unwrap() - 30.0).abs() < 2.0, "{line:?}");
        assert!((line.mean_delta.unwrap() - 24.5).abs() < 1.0, "{line:?}");
        assert!(line.spearman.abs() < 0.03, "{line:?}");
        let curve = &a.report.curve.series[0].1;
        assert_eq!(curve[0], -24.5);
        assert!((curve[20] - 0.0).abs() < 1e-12);
        let table = markdown_table(&a);
        assert!(table.starts_with("| router | Spearman | HitRate@30% |"), "{table}");
        assert!(table.contains("| random | "), "{table}");
        assert_eq!(percent_label(0.125), "12.5");
        assert_eq!(percent_label(1.0), "100");
        assert_eq!(percent_label(0.0), "0");
    }
}
