//! The decision rule of a routing run (`docs/metrics.md`, Policies) and the values a front door
//! parses to choose it:
//!
//! - [`Budget`]: a share `p` of requests for the large model, a fraction in `[0, 1]`;
//! - [`ThresholdSpec`]: a threshold given as a number or as a `THRESH.json` to read (this crate
//!   reads no files: the front door passes the file's bytes to [`Calibration::from_json`]);
//! - [`Rule`]: offline top-p over a whole column, a threshold τ, or the streaming
//!   [`BudgetController`], each with its [`Direction`]. Offline top-p decides a column at once
//!   ([`Rule::decide_column`]); the streaming rules also decide one record at a time
//!   ([`Rule::decide`]). The rule counts its decisions for [`Rule::summary`].
//!
//! A quality guard ([`crate::Guard`]) is applied by passing whether it blocks a record: blocked
//! records stay small (top-p refills its budget from the next best, the controller counts them
//! as small decisions).

use std::fmt;
use std::str::FromStr;

use crate::controller::{BudgetController, ControllerConfig};
use crate::error::{Result, RouteError};
use crate::policy::{Calibration, Direction, Route, route_by_threshold, top_p};
use crate::rank::{budget_count, check_budget};

/// A budget `p`: the share of requests the large model may serve, a fraction in `[0, 1]`.
/// Parses from text such as `0.3` (30%).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Budget(f64);

impl Budget {
    /// A budget; errors outside `[0, 1]` (or NaN).
    pub fn new(p: f64) -> Result<Self> {
        check_budget(p)?;
        Ok(Budget(p))
    }

    /// `p` as a number.
    pub fn get(self) -> f64 {
        self.0
    }

    /// Records it routes out of `n`: `floor(p·n + 0.5)`.
    pub fn count(self, n: usize) -> usize {
        budget_count(self.0, n)
    }
}

impl FromStr for Budget {
    type Err = RouteError;

    fn from_str(s: &str) -> Result<Self> {
        let p: f64 =
            s.trim().parse().map_err(|_| RouteError::Invalid(format!("`{s}` is not a number")))?;
        Budget::new(p).map_err(|_| {
            RouteError::Invalid(format!(
                "a budget is a fraction in [0, 1] (e.g. 0.3 for 30%), got {s}"
            ))
        })
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A threshold as the user gives it: a finite number, or anything else, taken as the path of a
/// `THRESH.json` from `routelmt calibrate` (which also sets the field and its direction).
#[derive(Debug, Clone, PartialEq)]
pub enum ThresholdSpec {
    /// τ in the field's units.
    Value(f64),
    /// A `THRESH.json` to read: read its bytes, then [`Calibration::from_json`] and
    /// [`Rule::from_calibration`].
    File(String),
}

impl FromStr for ThresholdSpec {
    type Err = RouteError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(ThresholdSpec::Value(x)),
            Ok(_) => {
                Err(RouteError::Invalid(format!("--threshold must be a finite number, got {s}")))
            }
            Err(_) => Ok(ThresholdSpec::File(s.to_string())),
        }
    }
}

/// How a [`Rule`] decides.
#[derive(Debug, Clone)]
enum Kind {
    TopP(Budget),
    Threshold(f64),
    Controller(Box<BudgetController>),
}

/// A decision rule over the values of one score field (see the module docs).
#[derive(Debug, Clone)]
pub struct Rule {
    kind: Kind,
    direction: Direction,
    decisions: usize,
    large: usize,
}

impl Rule {
    fn new(kind: Kind, direction: Direction) -> Self {
        Rule { kind, direction, decisions: 0, large: 0 }
    }

    /// Offline top-p: exactly `floor(p·N + 0.5)` records of a column go large (fewer only if a
    /// guard leaves fewer eligible), best first by `direction`, ties by input order.
    pub fn top_p(budget: Budget, direction: Direction) -> Self {
        Rule::new(Kind::TopP(budget), direction)
    }

    /// A threshold: large when `direction.score(value) > direction.score(threshold)`, i.e.
    /// `value > threshold` for [`Direction::Desc`] and `value < threshold` for
    /// [`Direction::Asc`].
    pub fn threshold(threshold: f64, direction: Direction) -> Self {
        Rule::new(Kind::Threshold(threshold), direction)
    }

    /// The streaming budget controller; errors if the settings cannot give its guarantee.
    pub fn controller(config: ControllerConfig, direction: Direction) -> Result<Self> {
        let controller = BudgetController::new(config)?;
        Ok(Rule::new(Kind::Controller(Box::new(controller)), direction))
    }

    /// The threshold rule of a calibration read from `name` (e.g. the path of its
    /// `THRESH.json`), for routing on `field`: the calibration must be on that field, and
    /// `asc` (the user asked for lowest values first) must not contradict its direction. The
    /// direction is the calibration's.
    pub fn from_calibration(cal: &Calibration, name: &str, field: &str, asc: bool) -> Result<Self> {
        if cal.field != field {
            return Err(RouteError::Invalid(format!(
                "{name} was calibrated on field `{}`, not `{field}`",
                cal.field
            )));
        }
        if asc && cal.order == Direction::Desc {
            return Err(RouteError::Invalid(format!(
                "--asc contradicts {name}, which was calibrated highest-first"
            )));
        }
        Ok(Rule::threshold(cal.threshold, cal.order))
    }

    /// Which end of the field goes large first.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The budget of top-p and of the controller (`None` for a threshold).
    pub fn budget(&self) -> Option<Budget> {
        match &self.kind {
            Kind::TopP(b) => Some(*b),
            Kind::Threshold(_) => None,
            Kind::Controller(c) => Some(Budget(c.config().budget)),
        }
    }

    /// τ in the field's units, for a threshold rule.
    pub fn tau(&self) -> Option<f64> {
        match self.kind {
            Kind::Threshold(t) => Some(t),
            _ => None,
        }
    }

    /// The controller (its band, window and forced decisions), for a controller rule.
    pub fn controller_state(&self) -> Option<&BudgetController> {
        match &self.kind {
            Kind::Controller(c) => Some(c),
            _ => None,
        }
    }

    /// True for the rules that decide one record at a time (threshold, controller); false for
    /// offline top-p, which needs the whole column.
    pub fn is_streaming(&self) -> bool {
        !matches!(self.kind, Kind::TopP(_))
    }

    /// Decides one record from its field `value`; `blocked` (a quality guard holds it back)
    /// keeps it small. Errors for offline top-p, which decides whole columns only.
    pub fn decide(&mut self, value: f64, blocked: bool) -> Result<Route> {
        let score = self.direction.score(value);
        let route = match &mut self.kind {
            Kind::TopP(_) => {
                return Err(RouteError::Invalid(
                    "offline top-p ranks a whole column: decide it with `decide_column`".into(),
                ));
            }
            Kind::Threshold(_) if blocked => Route::Small,
            Kind::Threshold(t) => route_by_threshold(score, self.direction.score(*t)),
            Kind::Controller(c) if blocked => c.skip().route,
            Kind::Controller(c) => c.decide(score).route,
        };
        self.count(route);
        Ok(route)
    }

    /// Decides a whole column of field values in input order; `blocked[i]` (a quality guard)
    /// keeps record `i` small. The streaming rules decide the records one after another, as
    /// [`Rule::decide`] would.
    pub fn decide_column(
        &mut self,
        values: &[f64],
        blocked: Option<&[bool]>,
    ) -> Result<Vec<Route>> {
        if let Some(b) = blocked
            && b.len() != values.len()
        {
            return Err(RouteError::Length {
                what: "guard mask",
                got: b.len(),
                expected: values.len(),
            });
        }
        let is_blocked = |i: usize| blocked.is_some_and(|b| b[i]);
        let routes = match self.kind {
            Kind::TopP(p) => {
                let scores: Vec<f64> = values.iter().map(|&v| self.direction.score(v)).collect();
                let routes = top_p(&scores, p.get(), blocked)?;
                routes.iter().for_each(|&r| self.count(r));
                routes
            }
            _ => (0..values.len())
                .map(|i| self.decide(values[i], is_blocked(i)))
                .collect::<Result<_>>()?,
        };
        Ok(routes)
    }

    fn count(&mut self, route: Route) {
        self.decisions += 1;
        self.large += usize::from(route.is_large());
    }

    /// Decisions made so far.
    pub fn decisions(&self) -> usize {
        self.decisions
    }

    /// Large decisions made so far.
    pub fn large(&self) -> usize {
        self.large
    }

    /// Decisions the controller's hard band overrode (0 for the other rules).
    pub fn forced(&self) -> u64 {
        self.controller_state().map_or(0, BudgetController::forced)
    }

    /// One line on what the decisions so far did, e.g. `routed 3 of 10 records to the large
    /// model (30.00%); budget 30.00% = 3 records`, plus the controller's band, window and forced
    /// decisions for a controller rule.
    pub fn summary(&self) -> String {
        let (n, large) = (self.decisions, self.large);
        let share = if n == 0 { 0.0 } else { large as f64 / n as f64 };
        let mut summary =
            format!("routed {large} of {n} records to the large model ({:.2}%)", 100.0 * share);
        if let Some(p) = self.budget() {
            let p = p.get();
            summary.push_str(&format!(
                "; budget {:.2}% = {} records",
                100.0 * p,
                budget_count(p, n)
            ));
        }
        if let Some(c) = self.controller_state() {
            let (lo, hi) = c.band();
            summary.push_str(&format!(
                "; controller window {} keeps {lo}..={hi} large per window, {} decisions forced",
                c.config().window,
                c.forced()
            ));
        }
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baselines::Guard;

    /// The `--budget` and `--guard` arguments (moved from the CLI, same messages).
    #[test]
    fn budgets_and_guards_parse_with_helpful_errors() {
        assert_eq!("0.3".parse::<Budget>().unwrap().get(), 0.3);
        assert_eq!(" 1 ".parse::<Budget>().unwrap().get(), 1.0);
        let e = "30".parse::<Budget>().unwrap_err().to_string();
        assert!(e.contains("fraction in [0, 1]"), "{e}");
        assert_eq!(e, "a budget is a fraction in [0, 1] (e.g. 0.3 for 30%), got 30");
        assert_eq!("x".parse::<Budget>().unwrap_err().to_string(), "`x` is not a number");
        assert!("NaN".parse::<Budget>().is_err() && "-0.1".parse::<Budget>().is_err());
        let g: Guard = "metric_small.COMETKiwi-src:0.85".parse().unwrap();
        assert_eq!((g.field.as_str(), g.max), ("metric_small.COMETKiwi-src", 0.85));
        assert_eq!("a:b: 2".parse::<Guard>().unwrap(), Guard { field: "a:b".into(), max: 2.0 });
        assert!("x".parse::<Guard>().is_err() && ":1".parse::<Guard>().is_err());
        let e = "x:inf".parse::<Guard>().unwrap_err().to_string();
        assert_eq!(e, "expected FIELD:MAX (e.g. metric_small.COMETKiwi-src:0.85), got `x:inf`");
        assert!(g.blocks(0.9) && !g.blocks(0.85));
    }

    /// Clap takes a `FromStr` type as an argument when its error is a boxable error.
    #[test]
    fn parse_errors_are_boxable_errors() {
        fn boxed<E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>>(e: E) -> String {
            e.into().to_string()
        }
        assert_eq!(boxed("x".parse::<Budget>().unwrap_err()), "`x` is not a number");
        assert!(boxed("x".parse::<Guard>().unwrap_err()).starts_with("expected FIELD:MAX"));
        assert!(boxed("inf".parse::<ThresholdSpec>().unwrap_err()).starts_with("--threshold"));
    }

    #[test]
    fn thresholds_are_numbers_or_files() {
        assert_eq!(" -2.5".parse::<ThresholdSpec>().unwrap(), ThresholdSpec::Value(-2.5));
        assert_eq!("1e3".parse::<ThresholdSpec>().unwrap(), ThresholdSpec::Value(1000.0));
        let f = "out/THRESH.json".parse::<ThresholdSpec>().unwrap();
        assert_eq!(f, ThresholdSpec::File("out/THRESH.json".into()));
        for bad in ["inf", "NaN", "-Infinity"] {
            let e = bad.parse::<ThresholdSpec>().unwrap_err().to_string();
            assert_eq!(e, format!("--threshold must be a finite number, got {bad}"));
        }
    }

    #[test]
    fn a_calibration_gives_a_threshold_rule_on_its_own_field() {
        let v: Vec<f64> = (0..10).map(f64::from).collect();
        let cal = Calibration::calibrate("q", Direction::Asc, &v, 0.3, 0, 0).unwrap();
        let bytes = serde_json::to_vec(&cal).unwrap();
        let cal = Calibration::from_json(&bytes, "t.json").unwrap();
        for asc in [false, true] {
            let mut rule = Rule::from_calibration(&cal, "t.json", "q", asc).unwrap();
            assert_eq!((rule.direction(), rule.tau()), (Direction::Asc, Some(2.5)));
            let routes = rule.decide_column(&v, None).unwrap();
            assert_eq!(routes, v.iter().map(|&x| cal.route(x)).collect::<Vec<_>>());
        }
        let e = Rule::from_calibration(&cal, "t.json", "gain", false).unwrap_err();
        assert_eq!(e.to_string(), "t.json was calibrated on field `q`, not `gain`");
        let desc = Calibration::calibrate("q", Direction::Desc, &v, 0.3, 0, 0).unwrap();
        let e = Rule::from_calibration(&desc, "t.json", "q", true).unwrap_err();
        assert_eq!(e.to_string(), "--asc contradicts t.json, which was calibrated highest-first");
    }

    #[test]
    fn top_p_decides_columns_only() {
        let v = [0.5, 0.9, 0.5, 0.5, 0.1];
        let mut rule = Rule::top_p("0.4".parse().unwrap(), Direction::Desc);
        assert!(!rule.is_streaming());
        assert_eq!(rule.decide_column(&v, None).unwrap(), top_p(&v, 0.4, None).unwrap());
        assert!(rule.decide(0.5, false).is_err());
        let mut asc = Rule::top_p(Budget::new(0.4).unwrap(), Direction::Asc);
        let blocked = [false, false, false, false, true];
        let routes = asc.decide_column(&v, Some(&blocked)).unwrap();
        let large: Vec<usize> = (0..5).filter(|&i| routes[i].is_large()).collect();
        assert_eq!(large, [0, 2], "lowest first, the guard skips record 4");
        assert!(asc.decide_column(&v, Some(&blocked[..2])).is_err());
        assert_eq!(
            rule.summary(),
            "routed 2 of 5 records to the large model (40.00%); budget 40.00% = 2 records"
        );
    }

    #[test]
    fn streaming_rules_decide_records_or_columns_alike() {
        let v: Vec<f64> = (0..200).map(|i| f64::from((i * 37) % 101)).collect();
        let blocked: Vec<bool> = (0..200).map(|i| i % 7 == 3).collect();
        let cfg = ControllerConfig::new(0.3, 50);
        let rules = [
            Rule::threshold(60.0, Direction::Desc),
            Rule::controller(cfg, Direction::Asc).unwrap(),
        ];
        for mut rule in rules {
            assert!(rule.is_streaming());
            let mut one = rule.clone();
            let column = rule.decide_column(&v, Some(&blocked)).unwrap();
            let single: Vec<Route> =
                v.iter().zip(&blocked).map(|(&x, &b)| one.decide(x, b).unwrap()).collect();
            assert_eq!(column, single);
            assert_eq!(
                (rule.decisions(), rule.large()),
                (200, single.iter().filter(|r| r.is_large()).count())
            );
            assert_eq!(rule.summary(), one.summary());
        }
        let mut t = Rule::threshold(60.0, Direction::Desc);
        assert_eq!(
            (t.decide(61.0, false).unwrap(), t.decide(61.0, true).unwrap()),
            (Route::Large, Route::Small)
        );
        assert_eq!(t.decide(60.0, false).unwrap(), Route::Small);
        assert_eq!(t.summary(), "routed 1 of 3 records to the large model (33.33%)");
        assert_eq!((t.budget(), t.forced()), (None, 0));

        let mut c = Rule::controller(ControllerConfig::new(0.3, 10), Direction::Desc).unwrap();
        c.decide_column(&v[..40], None).unwrap();
        let ctl = c.controller_state().unwrap();
        let want = format!(
            "routed {} of 40 records to the large model ({:.2}%); budget 30.00% = 12 records; \
             controller window 10 keeps 3..=3 large per window, {} decisions forced",
            c.large(),
            100.0 * c.large() as f64 / 40.0,
            ctl.forced()
        );
        assert_eq!(c.summary(), want);
        assert_eq!(c.budget(), Some(Budget::new(0.3).unwrap()));
        assert!(Rule::controller(ControllerConfig::new(0.35, 10), Direction::Desc).is_err());
    }
}
