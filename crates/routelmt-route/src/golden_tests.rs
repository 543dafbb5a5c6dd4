//! Parity with independent references: `tests/fixtures/route/goldens.json`, written by
//! `scripts/route_goldens.py` (scipy's `spearmanr`, sacrebleu's chrF, and a plain Python
//! implementation of REFERENCE.md §4). Rerun the script as its header says after changing it.

use serde::Deserialize;

use crate::chrf::{corpus_chrf, sentence_chrf};
use crate::metrics::{Outcomes, Ranking, curve_budgets, evaluate};
use crate::policy::top_p;
use crate::rank::spearman;

const GOLDENS: &str = include_str!("../../../tests/fixtures/route/goldens.json");

/// Metrics and Spearman: both sides sum exactly (compensated vs `math.fsum`), so only
/// last-bit differences remain.
const METRIC_TOL: f64 = 1e-9;
/// chrF: same operation order as sacrebleu; differences would be last-bit only.
const CHRF_TOL: f64 = 1e-9;

#[derive(Deserialize)]
struct Goldens {
    spearman: Vec<SpearmanCase>,
    metrics: Vec<MetricCase>,
    chrf: ChrfGoldens,
}

#[derive(Deserialize)]
struct SpearmanCase {
    name: String,
    x: Vec<f64>,
    y: Vec<f64>,
    rho: f64,
}

#[derive(Deserialize)]
struct MetricCase {
    name: String,
    score_small: Vec<f64>,
    score_large: Vec<f64>,
    scores: Vec<f64>,
    severe_delta: f64,
    guard_quality: Option<Vec<f64>>,
    guard_max: Option<f64>,
    budgets: Vec<BudgetGolden>,
}

#[derive(Deserialize)]
struct BudgetGolden {
    budget: f64,
    k: usize,
    spearman: f64,
    hit_rate: Option<f64>,
    mean_delta: Option<f64>,
    severe_loss: Option<f64>,
    quality: f64,
    apgr: Option<f64>,
    routed: usize,
    curve: Vec<f64>,
}

#[derive(Deserialize)]
struct ChrfGoldens {
    sentences: Vec<ChrfSentence>,
    corpora: Vec<ChrfCorpus>,
}

#[derive(Deserialize)]
struct ChrfSentence {
    hyp: String,
    #[serde(rename = "ref")]
    reference: String,
    score: f64,
}

#[derive(Deserialize)]
struct ChrfCorpus {
    from: usize,
    to: usize,
    score: f64,
}

fn goldens() -> Goldens {
    serde_json::from_str(GOLDENS).expect("goldens.json parses")
}

fn close(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol * want.abs().max(1.0),
        "{what}: got {got:.17}, want {want:.17}"
    );
}

fn close_opt(what: &str, got: Option<f64>, want: Option<f64>) {
    match (got, want) {
        (Some(g), Some(w)) => close(what, g, w, METRIC_TOL),
        (None, None) => {}
        _ => panic!("{what}: got {got:?}, want {want:?}"),
    }
}

#[test]
fn spearman_matches_scipy() {
    let g = goldens();
    assert!(g.spearman.len() >= 8);
    for c in &g.spearman {
        close(&c.name, spearman(&c.x, &c.y), c.rho, METRIC_TOL);
    }
}

#[test]
fn metrics_match_the_python_reference() {
    let g = goldens();
    let mut checked = 0;
    for c in &g.metrics {
        let outcomes = Outcomes::new(&c.score_small, &c.score_large).unwrap();
        let blocked: Option<Vec<bool>> = c
            .guard_quality
            .as_ref()
            .map(|q| q.iter().map(|&v| v > c.guard_max.expect("guard max")).collect());
        for b in &c.budgets {
            let mut ranking = Ranking::from_scores(&c.scores).unwrap();
            if let Some(mask) = &blocked {
                ranking = ranking.with_guard(mask);
            }
            let m = evaluate(&outcomes, &ranking, b.budget, c.severe_delta).unwrap();
            let at = |what: &str| format!("{} @ p={} (k={}): {what}", c.name, b.budget, b.k);
            assert_eq!(crate::rank::budget_count(b.budget, c.scores.len()), b.k, "{}", at("k"));
            close(&at("spearman"), m.spearman, b.spearman, METRIC_TOL);
            close_opt(&at("hit_rate"), m.hit_rate, b.hit_rate);
            close_opt(&at("mean_delta"), m.mean_delta, b.mean_delta);
            close_opt(&at("severe_loss"), m.severe_loss, b.severe_loss);
            close(&at("quality"), m.quality, b.quality, METRIC_TOL);
            close_opt(&at("apgr"), m.apgr, b.apgr);
            assert_eq!(m.routed, b.routed, "{}", at("routed"));
            assert_eq!(m.curve.len(), b.curve.len());
            for (j, (x, y)) in m.curve.iter().zip(&b.curve).enumerate() {
                close(&at(&format!("curve[{j}]")), *x, *y, METRIC_TOL);
            }
            // The offline policy routes the same set as the metric's R.
            let routes = top_p(&c.scores, b.budget, blocked.as_deref()).unwrap();
            assert_eq!(routes.iter().filter(|r| r.is_large()).count(), b.routed, "{}", at("top_p"));
            checked += 1;
        }
    }
    assert!(checked >= 80, "only {checked} golden points");
    assert_eq!(curve_budgets().len(), 21);
}

#[test]
fn chrf_matches_sacrebleu() {
    let g = goldens();
    for (i, s) in g.chrf.sentences.iter().enumerate() {
        let what = format!("sentence {i} ({:?} vs {:?})", s.hyp, s.reference);
        close(&what, sentence_chrf(&s.hyp, &s.reference), s.score, CHRF_TOL);
    }
    for c in &g.chrf.corpora {
        let pairs =
            g.chrf.sentences[c.from..c.to].iter().map(|s| (s.hyp.as_str(), s.reference.as_str()));
        close(&format!("corpus {}..{}", c.from, c.to), corpus_chrf(pairs), c.score, CHRF_TOL);
    }
}
