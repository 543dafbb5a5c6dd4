//! The quality-vs-budget plot as a self-contained SVG string (hand-written: no font files, no
//! plotting dependency, same output natively and in the browser). One line per router, the
//! small-only and large-only qualities as dashed reference lines, the evaluated budget as a
//! dotted vertical line, axes with ticks and labels, and a legend.

use std::fmt::Write as _;

use crate::report::Evaluation;

/// Tableau 10: distinguishable, colour-blind-aware.
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

/// Tick positions covering `[lo, hi]` with a 1-2-5 step, and the decimals to print them.
fn nice_ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, usize) {
    let span = (hi - lo).max(f64::EPSILON * hi.abs().max(1.0));
    let raw = span / target as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step =
        [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let first = (lo / step).ceil();
    let last = (hi / step).floor();
    let ticks = (0..=((last - first) as i64).max(0)).map(|i| (first + i as f64) * step).collect();
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    (ticks, decimals)
}

/// Where things go: the plot area in pixels and the quality range it shows.
struct Frame {
    left: f64,
    top: f64,
    plot_w: f64,
    plot_h: f64,
    legend_x: f64,
    width: f64,
    height: f64,
    lo: f64,
    hi: f64,
}

impl Frame {
    /// The layout for an evaluation: the value range over every curve and both reference
    /// lines, padded by 5%, and room on the right for the longest legend label.
    fn new(eval: &Evaluation) -> Self {
        let series = &eval.report.curve.series;
        let mut lo = eval.small_only.min(eval.large_only);
        let mut hi = eval.small_only.max(eval.large_only);
        for &y in series.iter().flat_map(|(_, ys)| ys) {
            lo = lo.min(y);
            hi = hi.max(y);
        }
        let pad = ((hi - lo) * 0.05).max(1e-9 * hi.abs().max(1.0));
        let legend_chars =
            series.iter().map(|(n, _)| n.chars().count()).chain([10, 10]).max().unwrap_or(10);
        let (left, top, plot_w, plot_h) = (78.0, 48.0, 460.0, 340.0);
        let legend_x = left + plot_w + 24.0;
        Frame {
            left,
            top,
            plot_w,
            plot_h,
            legend_x,
            width: legend_x + 34.0 + legend_chars as f64 * 6.8 + 12.0,
            height: top + plot_h + 62.0,
            lo: lo - pad,
            hi: hi + pad,
        }
    }

    /// The x pixel of budget `p`.
    fn x(&self, p: f64) -> f64 {
        self.left + p * self.plot_w
    }

    /// The y pixel of quality `q`.
    fn y(&self, q: f64) -> f64 {
        self.top + (self.hi - q) / (self.hi - self.lo) * self.plot_h
    }
}

/// Renders the quality curves of an evaluation.
pub fn quality_curve_svg(eval: &Evaluation) -> String {
    let report = &eval.report;
    let f = Frame::new(eval);
    let mut s = String::new();
    let (width, height) = (f.width, f.height);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let title =
        format!("Quality vs. budget (N = {}, {} routers)", report.n, report.curve.series.len());
    let _ = writeln!(s, "<title>{}</title>", escape(&title));
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        f.left + f.plot_w / 2.0,
        escape(&title)
    );
    write_axes(&mut s, &f);
    write_budget(&mut s, &f, report.budget);
    let legend = write_curves(&mut s, &f, eval);
    write_legend(&mut s, &f, &legend);
    s.push_str("</svg>\n");
    s
}

/// Grid, ticks, tick labels, the frame and the axis titles.
fn write_axes(s: &mut String, f: &Frame) {
    let (left, top, plot_w, plot_h) = (f.left, f.top, f.plot_w, f.plot_h);
    let (yticks, decimals) = nice_ticks(f.lo, f.hi, 6);
    for t in &yticks {
        let py = f.y(*t);
        let _ = writeln!(
            s,
            r##"<line x1="{left:.1}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e6e6e6"/><text x="{:.1}" y="{:.1}" text-anchor="end">{t:.decimals$}</text>"##,
            left + plot_w,
            left - 6.0,
            py + 4.0
        );
    }
    for i in 0..=10 {
        let px = f.x(i as f64 / 10.0);
        let _ = writeln!(
            s,
            r##"<line x1="{px:.1}" y1="{top:.1}" x2="{px:.1}" y2="{:.1}" stroke="#e6e6e6"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}%</text>"##,
            top + plot_h,
            top + plot_h + 18.0,
            i * 10
        );
    }
    let _ = writeln!(
        s,
        r#"<rect x="{left:.1}" y="{top:.1}" width="{plot_w:.1}" height="{plot_h:.1}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">budget p (share of requests routed to the large model)</text>"#,
        left + plot_w / 2.0,
        top + plot_h + 42.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(20 {:.1}) rotate(-90)" text-anchor="middle">Quality@p (mean score of the chosen translations)</text>"#,
        top + plot_h / 2.0
    );
}

/// The evaluated budget, as a dotted vertical line.
fn write_budget(s: &mut String, f: &Frame, budget: f64) {
    let (top, pb) = (f.top, f.x(budget));
    let _ = writeln!(
        s,
        r##"<line x1="{pb:.1}" y1="{top:.1}" x2="{pb:.1}" y2="{:.1}" stroke="#555" stroke-dasharray="2 3"/><text x="{:.1}" y="{:.1}" fill="#555">p = {}</text>"##,
        top + f.plot_h,
        pb + 4.0,
        top + 14.0,
        budget
    );
}

/// The reference lines and one curve per router; returns the legend entries
/// `(label, colour, dash pattern)`.
fn write_curves<'a>(
    s: &mut String,
    f: &Frame,
    eval: &'a Evaluation,
) -> Vec<(String, &'a str, &'a str)> {
    let left = f.left;
    let mut legend: Vec<(String, &str, &str)> = Vec::new();
    for (label, q, color, dash) in [
        ("small only", eval.small_only, "#7f7f7f", "6 4"),
        ("large only", eval.large_only, "#000000", "6 4"),
    ] {
        let py = f.y(q);
        let _ = writeln!(
            s,
            r#"<line x1="{left:.1}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="{color}" stroke-width="1.5" stroke-dasharray="{dash}"/>"#,
            left + f.plot_w
        );
        legend.push((format!("{label} ({q:.4})"), color, dash));
    }
    let budgets = &eval.report.curve.budgets;
    for (i, (name, ys)) in eval.report.curve.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let points: Vec<String> =
            budgets.iter().zip(ys).map(|(p, q)| format!("{:.1},{:.1}", f.x(*p), f.y(*q))).collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        for pt in &points {
            let (cx, cy) = pt.split_once(',').expect("x,y");
            let _ = writeln!(s, r#"<circle cx="{cx}" cy="{cy}" r="2.5" fill="{color}"/>"#);
        }
        legend.push((name.clone(), color, ""));
    }
    legend
}

/// The legend, to the right of the plot.
fn write_legend(s: &mut String, f: &Frame, legend: &[(String, &str, &str)]) {
    let legend_x = f.legend_x;
    for (i, (label, color, dash)) in legend.iter().enumerate() {
        let ly = f.top + 10.0 + i as f64 * 20.0;
        let dash_attr =
            if dash.is_empty() { String::new() } else { format!(r#" stroke-dasharray="{dash}""#) };
        let _ = writeln!(
            s,
            r#"<line x1="{legend_x:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"{dash_attr}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            legend_x + 26.0,
            legend_x + 32.0,
            ly + 4.0,
            escape(label)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::RouterMetrics;
    use crate::report::{Curve, Report, RouterReport};

    #[test]
    fn svg_has_every_series_axes_and_legend() {
        let budgets = crate::metrics::curve_budgets();
        let line = |name: &str| RouterReport {
            name: name.into(),
            metrics: RouterMetrics {
                spearman: 0.0,
                hit_rate: None,
                mean_delta: None,
                severe_loss: None,
                quality: 0.0,
                apgr: None,
                routed: 0,
                curve: Vec::new(),
            },
        };
        let up: Vec<f64> = budgets.iter().map(|p| -5.0 + 4.0 * p).collect();
        let eval = Evaluation {
            report: Report {
                n: 10,
                budget: 0.3,
                severe_delta: 5.0,
                routers: vec![line("oracle-gain"), line("field:a<b>&c")],
                curve: Curve {
                    budgets: budgets.clone(),
                    series: vec![("oracle-gain".into(), up.clone()), ("field:a<b>&c".into(), up)],
                },
            },
            small_only: -5.0,
            large_only: -1.0,
        };
        let svg = quality_curve_svg(&eval);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 2 * 21);
        assert!(svg.contains("small only (-5.0000)") && svg.contains("large only (-1.0000)"));
        assert!(svg.contains("field:a&lt;b&gt;&amp;c") && !svg.contains("a<b>"));
        assert!(svg.contains("100%") && svg.contains("budget p"));
    }

    #[test]
    fn ticks_are_round() {
        let (t, d) = nice_ticks(-5.2, -0.8, 6);
        assert_eq!(t, vec![-5.0, -4.0, -3.0, -2.0, -1.0]);
        assert_eq!(d, 0);
        let (t, d) = nice_ticks(0.71, 0.79, 6);
        assert_eq!(d, 2);
        assert!((t[0] - 0.72).abs() < 1e-12);
    }
}
