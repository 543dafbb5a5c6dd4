//! Parity with independent references: `tests/fixtures/route/goldens.json`, written by
//! `tests/fixtures/route/make_goldens.py` (scipy's `spearmanr`, sacrebleu's chrF, and a plain
//! Python implementation of `docs/metrics.md`), and `tests/fixtures/route/thirds.jsonl`, written
//! by `tests/fixtures/route/make_thirds.py` (scores that must be parsed exactly; its Spearman by
//! scipy). Rerun a script as its header says after changing it.

use serde::Deserialize;

use crate::baselines::parse_router_list;
use crate::chrf::{corpus_chrf, sentence_chrf};
use crate::dataset::{Dataset, Needs};
use crate::jsonline::JsonLines;
use crate::metrics::{Outcomes, Ranking, curve_budgets, evaluate};
use crate::policy::top_p;
use crate::rank::spearman;
use crate::record::Record;
use crate::report::{EvalSettings, evaluate_routers};

const GOLDENS: &str = include_str!("../../../../tests/fixtures/route/goldens.json");
const THIRDS: &str = include_str!("../../../../tests/fixtures/route/thirds.jsonl");

/// `scipy.stats.spearmanr(router, score_large - score_small).statistic` on `thirds.jsonl`, as
/// `make_thirds.py` prints it. A one-ulp misread of most score texts there moves it by 1e-5
/// or more (the script checks); serde_json without `float_roundtrip` gives 0.5992088229300077.
const THIRDS_SPEARMAN: f64 = 0.5998186854264714;
/// Distinct gains (as doubles) in `thirds.jsonl`, as `make_thirds.py` prints it: exact ties
/// between different score pairs, which hold only when every text is read exactly.
const THIRDS_DISTINCT_GAINS: usize = 43;
/// Spearman of exactly parsed data: only the last bits of the correlation's sums may differ.
const THIRDS_TOL: f64 = 1e-12;

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

/// Scores written as means of three integer ratings (thirds such as 90.66666666666667 and
/// 0.3333333333333333) must be read as the nearest double, as Python and scipy read them:
/// gains of different score pairs then tie exactly, and Spearman equals scipy's. Both reading
/// paths are checked: the evaluation's borrowed view and the full record parser.
#[test]
fn thirds_spearman_matches_scipy_with_exact_parsing() {
    let needs = Needs { src_chars: false, fields: vec!["router".into()] };
    let data = Dataset::from_reader(THIRDS.as_bytes(), &needs).unwrap();
    assert_eq!(data.len(), 300);
    let router = data.field("router").unwrap();
    for &x in data.score_small.iter().chain(&data.score_large).chain(router) {
        assert_eq!(x, (x * 3.0).round() / 3.0, "{x:?} is not the double nearest to a third");
    }
    let gains = data.gains();
    let mut distinct = gains.clone();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup_by(|a, b| a == b);
    assert_eq!(distinct.len(), THIRDS_DISTINCT_GAINS, "ties between gains");

    let routers = parse_router_list("field:router").unwrap();
    let eval = evaluate_routers(&data, &routers, &EvalSettings::default()).unwrap();
    let rho = eval.report.routers[0].metrics.spearman;
    assert!((rho - THIRDS_SPEARMAN).abs() <= THIRDS_TOL, "report: {rho:.17}");

    let (mut scores, mut record_gains) = (Vec::new(), Vec::new());
    for item in JsonLines::new(THIRDS.as_bytes()) {
        let (line, text) = item.unwrap();
        let record = Record::from_json_line(&text, line).unwrap();
        scores.push(record.number("router", line).unwrap());
        record_gains.push(record.gain);
    }
    assert_eq!((scores.as_slice(), &record_gains), (router, &gains), "both paths read alike");
    let rho = spearman(&scores, &record_gains);
    assert!((rho - THIRDS_SPEARMAN).abs() <= THIRDS_TOL, "records: {rho:.17}");
}
