//! `routelmt eval | calibrate | route | labels`: thin front doors onto `routelmt-route`. This
//! file owns the I/O: files are read as streams, and every output is written to a temporary
//! file in the destination folder and renamed into place only on success, so an error never
//! leaves a half-written file. Errors name the file and, for bad records, the line.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, ValueEnum};
use routelmt_model::{PrepareOptions, hf};
use routelmt_route::controller::ControllerConfig;
use routelmt_route::jsonline::{number_field, parse_object, set_fields, string_field};
use routelmt_route::{
    Budget, Calibration, ChrfStats, Dataset, Direction, EvalSettings, Guard, JsonLines, Needs,
    RouterSpec, Rule, ThresholdSpec, evaluate_routers, markdown_table, parse_router_list, plot,
};
use serde_json::{Value, json};

use crate::args::{BatchOpt, DeviceOpt};
use crate::io::{print_stdout, write_atomic};
use crate::requests::{LazyTokenizer, for_each_batch};

/// Reads inputs in large chunks: a million records are a few hundred MB.
const READ_BUFFER: usize = 1 << 20;

/// Evaluate routers against real quality scores.
///
/// Prints a markdown table of Spearman, HitRate@p, MeanDelta@p, SevereLoss@p, Quality@p, APGR
/// and the routed count per router, and writes REPORT.json with the same numbers plus each
/// router's quality curve at p = 0, 0.05, ..., 1. Metric definitions: docs/metrics.md.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Records (JSONL), one per segment, with `score_small` and `score_large` (higher is
    /// better; `gain`, if present, must equal their difference) and whatever the routers read
    /// (`src` for `length`, the named fields for `field:` routers and guards).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,

    /// Budget p: the share of requests the large model may serve, a fraction in [0, 1]. The
    /// routed set is the top floor(p·N + 0.5) records by router score, ties by input order.
    #[arg(long, value_name = "P")]
    pub budget: Budget,

    /// Comma-separated routers: `random`, `length` (source characters), `oracle-gain`,
    /// `oracle-quality` (lowest score_small first), `field:NAME` (any numeric field, highest
    /// first), `field:NAME:asc` (lowest first). Append `+guard:FIELD:MAX` to a router to never
    /// route records whose FIELD is above MAX and refill the budget from the next best.
    #[arg(long, value_name = "LIST", value_parser = parse_routers)]
    pub routers: RouterList,

    /// Where to write REPORT.json.
    #[arg(long, value_name = "REPORT.json")]
    pub output: PathBuf,

    /// δ of SevereLoss@p, in score units: a routed record with gain < −δ is a severe loss.
    #[arg(long, value_name = "D", default_value_t = 0.1, allow_negative_numbers = true)]
    pub severe_delta: f64,

    /// Also plot every router's quality curve, with the small-only and large-only lines, as SVG.
    #[arg(long, value_name = "CURVE.svg")]
    pub plot: Option<PathBuf>,

    /// Seed of the `random` router.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,

    /// Number of random draws the `random` router's metrics are averaged over.
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub random_repeats: u64,
}

/// Calibrate a streaming threshold τ_p on held-out scores.
///
/// Writes THRESH.json with τ_p, the share it routes on the held-out set (at most p; below p
/// when scores tie at the cut) and a bootstrap 95% interval of that share. `routelmt route
/// --threshold THRESH.json` applies it.
#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// Held-out records (JSONL) carrying the router score in --field.
    #[arg(long, value_name = "FILE")]
    pub scores: PathBuf,

    /// The numeric field holding the router score.
    #[arg(long, value_name = "NAME")]
    pub field: String,

    /// Route the lowest values first (for a quality estimate rather than a predicted gain).
    #[arg(long)]
    pub asc: bool,

    /// Target share p of requests for the large model, in [0, 1].
    #[arg(long, value_name = "P")]
    pub budget: Budget,

    /// Where to write THRESH.json.
    #[arg(long, value_name = "THRESH.json")]
    pub output: PathBuf,

    /// Also store the threshold in this router folder's router.json, so the router ships
    /// with its τ_p (`routelmt route --router DIR` then uses it by default).
    #[arg(long, value_name = "DIR")]
    pub router: Option<PathBuf>,

    /// Bootstrap resamples for the 95% interval of the share.
    #[arg(long, value_name = "B", default_value_t = 1000)]
    pub bootstrap: usize,

    /// Seed of the bootstrap.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
}

/// Where `route` reads its router scores from.
#[derive(Args, Debug)]
#[group(required = true, multiple = true)]
pub struct RouteInput {
    /// Records (JSONL) that already carry a router score in --field.
    #[arg(long, value_name = "FILE", requires = "field")]
    pub scores: Option<PathBuf>,

    /// The numeric field of --scores holding the router score.
    #[arg(long, value_name = "NAME", requires = "scores")]
    pub field: Option<String>,

    /// Records to score with a trained router first (needs --model and --router); the
    /// output then carries `score` as well as `route`.
    #[arg(long, value_name = "FILE", requires_all = ["model", "router"], conflicts_with = "scores")]
    pub input: Option<PathBuf>,

    /// Base model folder the router was trained on.
    #[arg(long, value_name = "DIR", requires = "input")]
    pub model: Option<PathBuf>,

    /// Router folder from `routelmt train`. Without --budget or --threshold, its calibrated
    /// threshold (`routelmt calibrate --router`) is used.
    #[arg(long, value_name = "DIR", requires = "input")]
    pub router: Option<PathBuf>,

    /// Decoder weights for scoring: f32, f16, q8 or q4 [default: the router's].
    #[arg(long, requires = "input", env = "ROUTELMT_WEIGHTS")]
    pub weights: Option<routelmt_model::Precision>,
}

/// How `route` turns scores into decisions.
#[derive(Args, Debug)]
#[group(required = false, multiple = false)]
pub struct RouteDecision {
    /// Route the top floor(p·N + 0.5) records of the whole file (offline top-p, ties by input
    /// order); with --window, decide as a stream instead.
    #[arg(long, value_name = "P")]
    pub budget: Option<Budget>,

    /// Route records whose score exceeds T: a number, or a THRESH.json from `calibrate`
    /// (which also sets the field's direction).
    #[arg(long, value_name = "T|THRESH.json", allow_negative_numbers = true)]
    pub threshold: Option<ThresholdSpec>,
}

/// Add `route: "large"|"small"` to every record, in input order.
///
/// Every other byte of each record is kept as written. With --budget P the whole file is
/// ranked (exactly floor(p·N + 0.5) records go large); with --budget P --window W each record
/// is decided on arrival by the streaming budget controller, which keeps the large share within
/// p ± 2 points over every W consecutive records; with --threshold the rule is score > T.
#[derive(Args, Debug)]
pub struct RouteArgs {
    /// Input.
    #[command(flatten)]
    pub input: RouteInput,

    /// Decision rule.
    #[command(flatten)]
    pub decision: RouteDecision,

    /// Route the lowest values of the field first (a quality estimate rather than a gain).
    #[arg(long)]
    pub asc: bool,

    /// Decide as a stream with the budget controller over a sliding window of N records
    /// (needs --budget).
    #[arg(long, value_name = "N", requires = "budget",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub window: Option<u64>,

    /// Quality guard: never route a record whose FIELD is above MAX (the small model is
    /// already good enough), e.g. `metric_small.COMETKiwi-src:0.85`; top-p refills the budget
    /// from the next best.
    #[arg(long, value_name = "FIELD:MAX")]
    pub guard: Option<Guard>,

    /// Where to write the routed records (JSONL).
    #[arg(long, value_name = "OUT")]
    pub output: PathBuf,

    /// Compute device for --router scoring.
    #[command(flatten)]
    pub device: DeviceOpt,

    /// Prompts per forward pass for --router scoring.
    #[command(flatten)]
    pub batch: BatchOpt,

    /// tokenizer.json for --router scoring, instead of MODEL/tokenizer.json.
    #[arg(long, value_name = "FILE", requires = "router")]
    pub tokenizer: Option<PathBuf>,
}

/// Quality metric for `labels`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelMetric {
    /// chrF2 as sacrebleu computes it (character 6-grams, β = 2, whitespace removed), 0–100.
    Chrf,
}

/// Fill `score_small`/`score_large` from hypotheses and references.
///
/// Each record needs `hyp_small`, `hyp_large` and `ref`; `score_small`, `score_large`,
/// `gain` and `score_type` are set (replaced if present), every other byte is kept. Prints
/// corpus-level scores of both systems.
#[derive(Args, Debug)]
pub struct LabelsArgs {
    /// Records (JSONL) with `hyp_small`, `hyp_large` and `ref`.
    #[arg(long, value_name = "IN")]
    pub input: PathBuf,

    /// The segment-level metric.
    #[arg(long, value_enum, default_value_t = LabelMetric::Chrf)]
    pub metric: LabelMetric,

    /// Where to write the labelled records (JSONL).
    #[arg(long, value_name = "OUT")]
    pub output: PathBuf,
}

/// A parsed `--routers` list.
#[derive(Clone, Debug)]
pub struct RouterList(pub Vec<RouterSpec>);

fn parse_routers(s: &str) -> Result<RouterList, String> {
    parse_router_list(s).map(RouterList).map_err(|e| e.to_string())
}

// --- eval -----------------------------------------------------------------------------------

/// `routelmt eval`.
pub fn eval(a: EvalArgs) -> Result<()> {
    let routers = a.routers.0;
    let mut needs = Needs::default();
    routers.iter().for_each(|r| r.add_needs(&mut needs));
    let data = Dataset::from_reader(open(&a.data)?, &needs)
        .with_context(|| a.data.display().to_string())?;
    if data.is_empty() {
        bail!("{}: no records", a.data.display());
    }
    let settings = EvalSettings {
        budget: a.budget.get(),
        severe_delta: a.severe_delta,
        seed: a.seed,
        random_repeats: a.random_repeats as usize,
    };
    let evaluation = evaluate_routers(&data, &routers, &settings)
        .with_context(|| format!("evaluating {}", a.data.display()))?;

    // Render everything first, then write: a failure leaves neither file half-written.
    let json = serde_json::to_string_pretty(&evaluation.report)? + "\n";
    let svg = a.plot.as_ref().map(|_| plot::quality_curve_svg(&evaluation));
    write_atomic(&a.output, |w| Ok(w.write_all(json.as_bytes())?))?;
    if let (Some(path), Some(svg)) = (&a.plot, svg) {
        write_atomic(path, |w| Ok(w.write_all(svg.as_bytes())?))?;
    }
    print_stdout(&markdown_table(&evaluation))?;
    eprintln!(
        "wrote {}{}",
        a.output.display(),
        a.plot.as_ref().map(|p| format!(" and {}", p.display())).unwrap_or_default()
    );
    Ok(())
}

// --- calibrate ------------------------------------------------------------------------------

/// `routelmt calibrate`.
pub fn calibrate(a: CalibrateArgs) -> Result<()> {
    let lines = JsonLines::new(open(&a.scores)?).map(|r| r.map_err(anyhow::Error::from));
    let values =
        read_column(lines, &a.field, None).with_context(|| a.scores.display().to_string())?.0;
    let order = if a.asc { Direction::Asc } else { Direction::Desc };
    let t = Calibration::calibrate(&a.field, order, &values, a.budget.get(), a.bootstrap, a.seed)
        .with_context(|| format!("calibrating on {}", a.scores.display()))?;
    let json = serde_json::to_string_pretty(&t)? + "\n";
    if let Some(dir) = &a.router {
        let path = dir.join(routelmt_model::router::ROUTER_JSON);
        let bytes =
            std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        let shown = path.display().to_string();
        let mut cfg = routelmt_model::RouterConfig::from_json(&bytes, &shown)?;
        if a.field != "score" {
            bail!("a router's threshold is on its `score` field; calibrate with --field score");
        }
        let expect_asc = cfg.head == routelmt_model::HeadKind::Quality;
        if a.asc != expect_asc {
            bail!(
                "{shown}: a {:?} router routes {} first; {} --asc",
                cfg.head,
                if expect_asc { "the lowest scores" } else { "the highest scores" },
                if expect_asc { "add" } else { "drop" }
            );
        }
        cfg.threshold = Some(serde_json::to_value(&t)?);
        let text = serde_json::to_string_pretty(&cfg)? + "\n";
        write_atomic(&path, |w| Ok(w.write_all(text.as_bytes())?))?;
        eprintln!("stored τ in {shown}");
    }
    write_atomic(&a.output, |w| Ok(w.write_all(json.as_bytes())?))?;
    print_stdout(&format!(
        "τ = {} ({}): routes {} of {} held-out records ({:.2}%, budget {:.2}%), bootstrap 95% \
         interval of the share [{:.2}%, {:.2}%]\n",
        t.threshold,
        t.rule,
        t.routed,
        t.n,
        100.0 * t.share,
        100.0 * t.budget,
        100.0 * t.share_ci95[0],
        100.0 * t.share_ci95[1]
    ))?;
    Ok(())
}

// --- route ----------------------------------------------------------------------------------

/// `routelmt route`.
pub fn route(a: RouteArgs) -> Result<()> {
    if let (Some(input), Some(model), Some(router)) =
        (&a.input.input, &a.input.model, &a.input.router)
    {
        return route_with_router(&a, input, model, router);
    }
    let (Some(path), Some(field)) = (&a.input.scores, &a.input.field) else {
        bail!("give --scores FILE --field NAME");
    };
    let rule = rule(&a, field, a.asc)?;
    let lines = || -> Result<Lines<'_>> {
        Ok(Box::new(JsonLines::new(open(path)?).map(|r| r.map_err(anyhow::Error::from))))
    };
    route_records(&a, &lines, field, rule).with_context(|| path.display().to_string())
}

/// The decision rule from --budget [--window] or --threshold, on `field`.
fn rule(a: &RouteArgs, field: &str, asc: bool) -> Result<Rule> {
    let order = if asc { Direction::Asc } else { Direction::Desc };
    Ok(match (a.decision.budget, &a.decision.threshold, a.window) {
        (Some(p), None, None) => Rule::top_p(p, order),
        (Some(p), None, Some(w)) => {
            Rule::controller(ControllerConfig::new(p.get(), w as usize), order)
                .context("--window")?
        }
        (None, Some(ThresholdSpec::Value(t)), None) => Rule::threshold(*t, order),
        (None, Some(ThresholdSpec::File(t)), None) => {
            let bytes = std::fs::read(t).with_context(|| {
                format!("--threshold {t} is neither a number nor a readable file")
            })?;
            Rule::from_calibration(&Calibration::from_json(&bytes, t)?, t, field, a.asc)?
        }
        _ => bail!("give exactly one of --budget P [--window N] or --threshold T"),
    })
}

/// `route --input --model --router`: scores every record with the trained router, then routes
/// on its `score` (lowest first for a quality head). Without --budget or --threshold, the
/// router's calibrated threshold decides.
fn route_with_router(a: &RouteArgs, input: &Path, model: &Path, router: &Path) -> Result<()> {
    let dev = a.device.select()?;
    let scorer = hf::load_scorer(model, router, &dev.device, a.input.weights)?;
    let asc = scorer.lowest_first();
    let rule = match (&a.decision.budget, &a.decision.threshold, &scorer.router().config.threshold)
    {
        (None, None, Some(t)) => {
            let name = router.join(routelmt_model::router::ROUTER_JSON).display().to_string();
            let cal = Calibration::from_json(&serde_json::to_vec(t)?, &name)?;
            Rule::from_calibration(&cal, &name, "score", asc || a.asc)?
        }
        (None, None, None) => bail!(
            "{} has no calibrated threshold; give --budget or --threshold, or run `routelmt \
             calibrate --router`",
            router.display()
        ),
        _ => rule(a, "score", asc || a.asc)?,
    };
    let tok = LazyTokenizer::new(model, &a.tokenizer, scorer.chat_mode());
    let vocab = Some(scorer.model().config.vocab_size);
    let opts = PrepareOptions { style: scorer.prompt_style(), allow_ids: true, vocab };
    let batch_size = a.batch.get();
    let mut scored: Vec<String> = Vec::new();
    for_each_batch(input, batch_size, &tok, opts, None, |batch| {
        let ids: Vec<Vec<u32>> = batch.iter().map(|(p, _)| p.ids.clone()).collect();
        for ((_, line), s) in batch.iter().zip(scorer.score(&ids, batch_size)?.read()?) {
            let text = set_fields(&line.text, &scorer.fields(&s));
            scored
                .push(text.ok_or_else(|| anyhow!("line {}: expected a JSON object", line.number))?);
        }
        Ok(())
    })?;
    let lines = || -> Result<Lines<'_>> {
        Ok(Box::new(scored.iter().enumerate().map(|(i, t)| Ok((i + 1, t.clone())))))
    };
    route_records(a, &lines, "score", rule).with_context(|| input.display().to_string())
}

/// A record line and its 1-based number.
type Numbered = Result<(usize, String)>;

/// The records of one routing pass.
type Lines<'a> = Box<dyn Iterator<Item = Numbered> + 'a>;

/// Routes the records `lines()` yields (called once more for offline top-p, which ranks the
/// whole column first), writing each with `route` added to --output, every other byte kept.
fn route_records<'a>(
    a: &RouteArgs,
    lines: &dyn Fn() -> Result<Lines<'a>>,
    field: &str,
    mut rule: Rule,
) -> Result<()> {
    let guard = a.guard.as_ref();
    let offline = if rule.is_streaming() {
        None
    } else {
        let (values, quality) = read_column(lines()?, field, guard)?;
        Some(rule.decide_column(&values, guard.map(|g| g.blocked(&quality)).as_deref())?)
    };
    let mut n = 0usize;
    write_atomic(&a.output, |w| {
        for item in lines()? {
            let (line, text) = item?;
            let route = match &offline {
                Some(routes) => *routes.get(n).ok_or_else(|| {
                    anyhow!("line {line}: the file changed while it was being routed")
                })?,
                None => {
                    let obj = parse_object(&text, line)?;
                    let blocked = match guard {
                        Some(g) => g.blocks(number_field(&obj, &g.field, line)?),
                        None => false,
                    };
                    rule.decide(number_field(&obj, field, line)?, blocked)?
                }
            };
            let out = set_fields(&text, &[("route", json!(route.as_str()))])
                .ok_or_else(|| anyhow!("line {line}: expected a JSON object"))?;
            w.write_all(out.as_bytes())?;
            w.write_all(b"\n")?;
            n += 1;
        }
        match &offline {
            Some(routes) if routes.len() != n => bail!(
                "the file changed while it was being routed ({} then {n} records)",
                routes.len()
            ),
            _ => Ok(()),
        }
    })?;
    print_stdout(&format!("{}\n", rule.summary()))
}

/// Reads one numeric field of every record (and a guard's quality field).
fn read_column(
    lines: impl Iterator<Item = Numbered>,
    field: &str,
    guard: Option<&Guard>,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let (mut values, mut quality) = (Vec::new(), Vec::new());
    for item in lines {
        let (line, text) = item?;
        let obj = parse_object(&text, line)?;
        values.push(number_field(&obj, field, line)?);
        if let Some(g) = guard {
            quality.push(number_field(&obj, &g.field, line)?);
        }
    }
    if values.is_empty() {
        bail!("no records");
    }
    Ok((values, quality))
}

// --- labels ---------------------------------------------------------------------------------

/// `routelmt labels`.
pub fn labels(a: LabelsArgs) -> Result<()> {
    let LabelMetric::Chrf = a.metric;
    let mut lines = JsonLines::new(open(&a.input)?);
    let (mut corpus_small, mut corpus_large) = (ChrfStats::default(), ChrfStats::default());
    let mut n = 0usize;
    let result = write_atomic(&a.output, |w| {
        while let Some(item) = lines.next_line() {
            let (line, text) = item?;
            let obj = parse_object(text, line)?;
            let reference = string_field(&obj, "ref", line)?;
            let small = ChrfStats::new(string_field(&obj, "hyp_small", line)?, reference);
            let large = ChrfStats::new(string_field(&obj, "hyp_large", line)?, reference);
            corpus_small.add(&small);
            corpus_large.add(&large);
            let (qs, ql) = (small.score(), large.score());
            let out = set_fields(
                text,
                &[
                    ("score_small", json!(qs)),
                    ("score_large", json!(ql)),
                    ("gain", json!(ql - qs)),
                    ("score_type", Value::from("chrF2")),
                ],
            )
            .ok_or_else(|| anyhow!("line {line}: expected a JSON object"))?;
            w.write_all(out.as_bytes())?;
            w.write_all(b"\n")?;
            n += 1;
        }
        Ok(())
    });
    result.with_context(|| a.input.display().to_string())?;
    print_stdout(&format!(
        "labelled {n} records with chrF2; corpus chrF2: small {:.4}, large {:.4}\n",
        corpus_small.score(),
        corpus_large.score()
    ))?;
    Ok(())
}

// --- I/O helpers ----------------------------------------------------------------------------

fn open(path: &Path) -> Result<BufReader<File>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(BufReader::with_capacity(READ_BUFFER, file))
}
