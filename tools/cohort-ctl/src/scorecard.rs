//! The experiment scorecard: an analysis result (the JSON the analysis service computes) as a
//! table for people (`cohortctl results`, and `make dev`'s live view), a table of looks, or CSV
//! rows. The one renderer of results: cohort-dev calls it too.
//!
//! It reads the result through a lenient view of its own (unknown fields ignored, missing
//! ones empty) rather than the analysis service's types, so a newer service's result still
//! prints.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::console::{table, timestamp};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ResultView {
    experiment_key: String,
    computed_at_ms: i64,
    holdout: bool,
    analysis: String,
    look: u32,
    information_fraction: f64,
    boundary: Option<f64>,
    planned_units_per_variant: Option<u64>,
    units: BTreeMap<String, u64>,
    excluded_units: u64,
    srm: Srm,
    metrics: Vec<Metric>,
    warnings: Vec<String>,
    decided_at_look: Option<u32>,
    paused_by_guardrail: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Srm {
    p_value: Option<f64>,
    detected: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Metric {
    metric: String,
    aggregation: String,
    role: String,
    variants: Vec<Variant>,
    comparisons: Vec<Comparison>,
    guardrail: Option<Guardrail>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Variant {
    variant: String,
    n: u64,
    mean: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Comparison {
    variant: String,
    rel_diff: Option<f64>,
    p_value: Option<f64>,
    interval: Option<Interval>,
    crossed_at_look: Option<u32>,
    harmful: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Interval {
    kind: String,
    rel: Option<[f64; 2]>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Guardrail {
    threshold: f64,
    harm_detected: bool,
}

fn view(result: &Value) -> Result<ResultView, String> {
    ResultView::deserialize(result).map_err(|e| format!("a result this cohortctl cannot read: {e}"))
}

impl Metric {
    fn is_primary(&self) -> bool {
        self.role != "guardrail"
    }

    fn comparison(&self, variant: &str) -> Option<&Comparison> {
        self.comparisons.iter().find(|c| c.variant == variant)
    }

    /// What the interval column holds: `repeated CI (rel.)` and the like.
    fn interval_label(&self) -> String {
        let kind = self.comparisons.iter().find_map(|c| c.interval.as_ref()).map(|i| i.kind.as_str());
        let name = match kind {
            Some("repeated") => "repeated CI",
            Some("fixed_horizon") => "fixed CI",
            Some("always_valid") => "always-valid CI",
            _ => "interval",
        };
        format!("{name} (rel.)")
    }
}

/// `+1.2%`, or `—` when there is nothing to show.
fn pct(x: Option<f64>) -> String {
    x.map_or("—".into(), |v| format!("{:+.1}%", v * 100.0))
}

/// A conversion rate with the conversions it stands for (`12.30% (246)`), or a mean.
fn mean_text(aggregation: &str, v: &Variant) -> String {
    match v.mean {
        None => "—".into(),
        Some(x) if aggregation == "conversion" => {
            format!("{:.2}% ({})", x * 100.0, (x * v.n as f64).round() as u64)
        }
        Some(x) if x.abs() < 10.0 => format!("{x:.4}"),
        Some(x) => format!("{x:.2}"),
    }
}

fn srm_text(s: &Srm) -> String {
    match s.p_value {
        Some(p) if s.detected => format!("MISMATCH (p={p:.2e})"),
        Some(p) => format!("ok (p={p:.2})"),
        None => "—".into(),
    }
}

/// The significance column: for primary metrics whether (and at which look) the interval
/// excluded 0, for guardrails whether harm was found. Empty for the control.
fn significance(primary: bool, c: Option<&Comparison>) -> String {
    match c {
        None => String::new(),
        Some(c) if primary => c.crossed_at_look.map_or("no".into(), |k| format!("yes (look {k})")),
        Some(c) if c.harmful => "HARMFUL".into(),
        Some(_) => "no".into(),
    }
}

fn interval_text(c: Option<&Comparison>) -> String {
    c.and_then(|c| c.interval.as_ref()?.rel)
        .map_or(String::new(), |[lo, hi]| format!("[{}, {}]", pct(Some(lo)), pct(Some(hi))))
}

/// The scorecard of one result: a header (look, information, boundary, SRM), the units per
/// arm, then per metric a table of its arms (units, conversions or mean, lift with its
/// interval, p-value, significance) and its guardrail, then the decision, pause and notes.
pub fn render(result: &Value) -> Result<String, String> {
    let r = view(result)?;
    let mut out = String::new();
    let boundary = r.boundary.map_or("—".into(), |b| format!("±{b:.2}"));
    let what = if r.holdout { "holdout" } else { "experiment" };
    let analysis =
        if r.analysis.is_empty() { String::new() } else { format!(", {}", r.analysis.replace('_', " ")) };
    out.push_str(&format!(
        "{what} {}{analysis}   look {}   information {:.0}%   boundary z {boundary}   SRM {}\n",
        r.experiment_key,
        r.look,
        r.information_fraction * 100.0,
        srm_text(&r.srm)
    ));
    let arms: Vec<String> = r.units.iter().map(|(arm, n)| format!("{arm} {n}")).collect();
    let mut units = format!("units: {}", if arms.is_empty() { "none yet".into() } else { arms.join(", ") });
    if r.excluded_units > 0 {
        units.push_str(&format!("; {} excluded (saw more than one variant)", r.excluded_units));
    }
    if let Some(planned) = r.planned_units_per_variant {
        units.push_str(&format!("; planned {planned} per variant"));
    }
    out.push_str(&units);
    out.push('\n');
    if r.computed_at_ms > 0 {
        out.push_str(&format!("computed {}\n", timestamp(r.computed_at_ms)));
    }
    for m in &r.metrics {
        let role = if m.is_primary() { "primary" } else { "guardrail" };
        out.push_str(&format!("\n  {} ({role}, {})\n", m.metric, m.aggregation));
        let value_header = if m.aggregation == "conversion" { "CONVERSIONS" } else { "MEAN" };
        let interval = m.interval_label().to_uppercase();
        let decided = if m.is_primary() { "SIGNIFICANT" } else { "HARMFUL" };
        let headers = ["VARIANT", "UNITS", value_header, "LIFT", interval.as_str(), "P", decided];
        let rows: Vec<Vec<String>> = m
            .variants
            .iter()
            .map(|v| {
                let c = m.comparison(&v.variant);
                vec![
                    v.variant.clone(),
                    v.n.to_string(),
                    mean_text(&m.aggregation, v),
                    c.map_or(String::new(), |c| pct(c.rel_diff)),
                    interval_text(c),
                    c.and_then(|c| c.p_value).map_or(String::new(), |p| format!("{p:.4}")),
                    significance(m.is_primary(), c),
                ]
            })
            .collect();
        for line in table(&headers, &rows).lines() {
            out.push_str(&format!("  {line}\n"));
        }
        if let Some(g) = &m.guardrail {
            out.push_str(&format!(
                "  guardrail: at most {:.0}% worse, watched every cycle: {}\n",
                g.threshold * 100.0,
                if g.harm_detected { "HARM DETECTED" } else { "ok" }
            ));
        }
    }
    if let Some(look) = r.decided_at_look {
        out.push_str(&format!("\ndecided at look {look}: a primary metric's interval excluded 0\n"));
    }
    if let Some(reason) = &r.paused_by_guardrail {
        out.push_str(&format!("\npaused: {reason}\n"));
    }
    for w in &r.warnings {
        out.push_str(&format!("note: {w}\n"));
    }
    Ok(out)
}

/// The history of looks, one row each: when, how much information, units, SRM, the decision,
/// and each primary metric's lifts with their intervals.
pub fn looks_table(results: &[Value]) -> Result<String, String> {
    let mut rows = Vec::with_capacity(results.len());
    for result in results {
        let r = view(result)?;
        let mut lifts = Vec::new();
        for m in r.metrics.iter().filter(|m| m.is_primary()) {
            for c in &m.comparisons {
                lifts.push(format!(
                    "{} {} {} {}",
                    m.metric,
                    c.variant,
                    pct(c.rel_diff),
                    interval_text(Some(c))
                ));
            }
        }
        rows.push(vec![
            r.look.to_string(),
            timestamp(r.computed_at_ms),
            format!("{:.0}%", r.information_fraction * 100.0),
            r.units.values().sum::<u64>().to_string(),
            srm_text(&r.srm),
            r.decided_at_look.map_or("no".into(), |k| format!("at look {k}")),
            lifts.join("; "),
        ]);
    }
    Ok(table(&["LOOK", "COMPUTED", "INFORMATION", "UNITS", "SRM", "DECIDED", "PRIMARY LIFTS"], &rows))
}

/// The CSV columns of [`csv_rows`].
pub const CSV_HEADERS: [&str; 15] = [
    "experiment",
    "look",
    "computed_at",
    "metric",
    "role",
    "aggregation",
    "variant",
    "units",
    "mean",
    "lift",
    "interval",
    "interval_low",
    "interval_high",
    "p_value",
    "significant",
];

/// One row per variant × metric, numbers unrounded; the control's comparison cells empty.
pub fn csv_rows(result: &Value) -> Result<Vec<Vec<String>>, String> {
    let r = view(result)?;
    let num = |x: Option<f64>| x.map_or(String::new(), |v| v.to_string());
    let mut rows = Vec::new();
    for m in &r.metrics {
        for v in &m.variants {
            let c = m.comparison(&v.variant);
            let interval = c.and_then(|c| c.interval.as_ref());
            let bound = |i: usize| num(interval.and_then(|iv| iv.rel).map(|r| r[i]));
            rows.push(vec![
                r.experiment_key.clone(),
                r.look.to_string(),
                timestamp(r.computed_at_ms),
                m.metric.clone(),
                m.role.clone(),
                m.aggregation.clone(),
                v.variant.clone(),
                v.n.to_string(),
                num(v.mean),
                num(c.and_then(|c| c.rel_diff)),
                interval.map_or(String::new(), |i| i.kind.clone()),
                bound(0),
                bound(1),
                num(c.and_then(|c| c.p_value)),
                significance(m.is_primary(), c),
            ]);
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests;
