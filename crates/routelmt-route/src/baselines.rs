//! Baseline routers (`docs/metrics.md`, Baseline routers) and the names users write for them:
//!
//! | name | score `s` (higher = large model first) |
//! |---|---|
//! | `random` | a seeded uniform draw (reported as the mean over many draws) |
//! | `length` | source length in Unicode scalar values |
//! | `oracle-gain` | `g = score_large − score_small` |
//! | `oracle-quality` | `−score_small` |
//! | `field:NAME` | any numeric field of the record (external QE, sentinel, your router) |
//! | `field:NAME:asc` | minus that field: the lowest value goes first |
//!
//! Any router may carry a quality guard, `+guard:FIELD:MAX`: records whose `FIELD` is above
//! `MAX` (the small model is already good enough) are skipped and the budget is refilled
//! from the next best.

use std::fmt;
use std::str::FromStr;

use crate::dataset::{Dataset, Needs};
use crate::error::{Result, RouteError};

/// The scoring rule of a router.
#[derive(Debug, Clone, PartialEq)]
pub enum Baseline {
    /// Seeded random order.
    Random,
    /// Longer sources first.
    Length,
    /// Largest true gain first (upper bound).
    OracleGain,
    /// Worst small-model quality first.
    OracleQuality,
    /// A numeric field of the record.
    Field {
        /// The field name, e.g. `metric_small.COMETKiwi-src`.
        name: String,
        /// Route the lowest values first.
        ascending: bool,
    },
}

/// The quality guard of a router: skip records whose `field` is above `max`.
#[derive(Debug, Clone, PartialEq)]
pub struct Guard {
    /// A (predicted or measured) small-model quality field.
    pub field: String,
    /// Records with `field > max` are never routed.
    pub max: f64,
}

impl Guard {
    /// Whether the guard blocks a record whose `field` holds `quality`.
    pub fn blocks(&self, quality: f64) -> bool {
        quality > self.max
    }

    /// Which records the guard blocks.
    pub fn blocked(&self, quality: &[f64]) -> Vec<bool> {
        quality.iter().map(|&q| self.blocks(q)).collect()
    }

    /// `FIELD` and `MAX` text as split off `FIELD:MAX`: a non-empty field, a finite number.
    fn from_parts(field: &str, max: &str) -> Option<Self> {
        let max: f64 = max.parse().ok()?;
        (!field.is_empty() && max.is_finite()).then(|| Guard { field: field.to_string(), max })
    }
}

/// `FIELD:MAX`, e.g. `metric_small.COMETKiwi-src:0.85` (the field may itself contain `:`).
impl FromStr for Guard {
    type Err = RouteError;

    fn from_str(s: &str) -> Result<Self> {
        s.rsplit_once(':').and_then(|(field, max)| Guard::from_parts(field, max.trim())).ok_or_else(
            || {
                RouteError::Invalid(format!(
                    "expected FIELD:MAX (e.g. metric_small.COMETKiwi-src:0.85), got `{s}`"
                ))
            },
        )
    }
}

/// A router as named on the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterSpec {
    /// The name as written (used as its key in reports).
    pub name: String,
    /// How records are scored.
    pub baseline: Baseline,
    /// Optional quality guard.
    pub guard: Option<Guard>,
}

impl FromStr for RouterSpec {
    type Err = RouteError;

    fn from_str(s: &str) -> Result<Self> {
        let name = s.trim();
        let unknown = || RouteError::UnknownRouter(name.to_string());
        let (base, guard) = match name.rsplit_once("+guard:") {
            Some((base, g)) => {
                let (field, max) = g.rsplit_once(':').ok_or_else(unknown)?;
                (base, Some(Guard::from_parts(field, max).ok_or_else(unknown)?))
            }
            None => (name, None),
        };
        let baseline = match base {
            "random" => Baseline::Random,
            "length" => Baseline::Length,
            "oracle-gain" => Baseline::OracleGain,
            "oracle-quality" => Baseline::OracleQuality,
            _ => {
                let field = base.strip_prefix("field:").ok_or_else(unknown)?;
                let (name, ascending) = if let Some(n) = field.strip_suffix(":asc") {
                    (n, true)
                } else if let Some(n) = field.strip_suffix(":desc") {
                    (n, false)
                } else {
                    (field, false)
                };
                if name.is_empty() {
                    return Err(unknown());
                }
                Baseline::Field { name: name.to_string(), ascending }
            }
        };
        Ok(RouterSpec { name: name.to_string(), baseline, guard })
    }
}

impl fmt::Display for RouterSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Parses a comma-separated router list; empty items are ignored, duplicates are an error.
pub fn parse_router_list(list: &str) -> Result<Vec<RouterSpec>> {
    let mut out: Vec<RouterSpec> = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let spec: RouterSpec = item.parse()?;
        if out.iter().any(|r| r.name == spec.name) {
            return Err(RouteError::DuplicateRouter(spec.name));
        }
        out.push(spec);
    }
    if out.is_empty() {
        return Err(RouteError::Invalid("no routers given".into()));
    }
    Ok(out)
}

impl RouterSpec {
    /// Adds the columns this router reads to `needs`.
    pub fn add_needs(&self, needs: &mut Needs) {
        match &self.baseline {
            Baseline::Length => needs.src_chars = true,
            Baseline::Field { name, .. } => needs.field(name),
            Baseline::Random | Baseline::OracleGain | Baseline::OracleQuality => {}
        }
        if let Some(g) = &self.guard {
            needs.field(&g.field);
        }
    }

    /// The router's scores on `data`; `None` for `random`, which is drawn per repeat.
    pub fn scores(&self, data: &Dataset) -> Result<Option<Vec<f64>>> {
        let missing = |what: &str| {
            RouteError::Invalid(format!(
                "router `{}` needs `{what}`, which was not loaded",
                self.name
            ))
        };
        Ok(match &self.baseline {
            Baseline::Random => None,
            Baseline::Length => Some(data.src_chars().ok_or_else(|| missing("src"))?.to_vec()),
            Baseline::OracleGain => Some(data.gains()),
            Baseline::OracleQuality => Some(data.score_small.iter().map(|q| -q).collect()),
            Baseline::Field { name, ascending } => {
                let col = data.field(name).ok_or_else(|| missing(name))?;
                Some(if *ascending { col.iter().map(|v| -v).collect() } else { col.to_vec() })
            }
        })
    }

    /// The guard's blocked mask on `data`, if the router has a guard.
    pub fn blocked(&self, data: &Dataset) -> Result<Option<Vec<bool>>> {
        let Some(g) = &self.guard else { return Ok(None) };
        let q = data.field(&g.field).ok_or_else(|| {
            RouteError::Invalid(format!("guard field `{}` was not loaded", g.field))
        })?;
        Ok(Some(g.blocked(q)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_baseline() {
        let list = parse_router_list(
            "random, length,oracle-gain,oracle-quality,field:metric_small.COMETKiwi-src:asc,field:a:b,field:x:desc",
        )
        .unwrap();
        let kinds: Vec<_> = list.iter().map(|r| r.baseline.clone()).collect();
        assert_eq!(
            kinds,
            vec![
                Baseline::Random,
                Baseline::Length,
                Baseline::OracleGain,
                Baseline::OracleQuality,
                Baseline::Field { name: "metric_small.COMETKiwi-src".into(), ascending: true },
                Baseline::Field { name: "a:b".into(), ascending: false },
                Baseline::Field { name: "x".into(), ascending: false },
            ]
        );
        assert_eq!(list[4].name, "field:metric_small.COMETKiwi-src:asc");
    }

    #[test]
    fn parses_guards() {
        let r: RouterSpec = "oracle-gain+guard:metric_small.COMETKiwi-src:0.85".parse().unwrap();
        assert_eq!(r.baseline, Baseline::OracleGain);
        assert_eq!(r.guard, Some(Guard { field: "metric_small.COMETKiwi-src".into(), max: 0.85 }));
        assert!("oracle-gain+guard:x".parse::<RouterSpec>().is_err());
        assert!("oracle-gain+guard:x:nan".parse::<RouterSpec>().is_err());
        assert!("oracle-gain+guard:x: 1".parse::<RouterSpec>().is_err());
    }

    #[test]
    fn rejects_unknown_empty_and_duplicates() {
        let e = parse_router_list("random,bogus").unwrap_err();
        assert!(e.to_string().starts_with("unknown router `bogus`"), "{e}");
        assert!(parse_router_list("field:").is_err());
        assert!(parse_router_list(" , ").is_err());
        let e = parse_router_list("length,length").unwrap_err();
        assert_eq!(e.to_string(), "router `length` is listed twice");
    }
}
