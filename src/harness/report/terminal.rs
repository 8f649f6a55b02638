//! One line per gated metric, in the spirit of criterion's change report.

use crate::gate::{GateKind, MetricDirection, MetricVerdict, Verdict, metric_direction};

/// Returns the unit of a metric's values.
fn unit(verdict: &MetricVerdict) -> &'static str {
    match verdict.kind {
        GateKind::Counter => "",
        GateKind::Relative | GateKind::Limit => {
            let metric = verdict.metric.split_whitespace().next().unwrap_or_default();
            match metric_direction(metric) {
                MetricDirection::HigherIsBetter => " tok/s",
                MetricDirection::LowerIsBetter if metric.contains('.') => " ms",
                MetricDirection::LowerIsBetter => "",
            }
        }
    }
}

/// Returns a value with its unit, such as `20.412 ms` or `2336`.
pub fn format_value(verdict: &MetricVerdict, value: Option<f64>) -> String {
    match (value, verdict.kind) {
        (None, _) => "-".to_owned(),
        (Some(value), GateKind::Counter) => format!("{value:.0}"),
        (Some(value), _) => format!("{value:.3}{}", unit(verdict)),
    }
}

fn format_change(verdict: &MetricVerdict) -> String {
    match (verdict.change, verdict.kind) {
        (None, _) => "-".to_owned(),
        (Some(change), GateKind::Counter) => format!("{change:+.0}"),
        (Some(change), _) => format!("{:+.2} %", change * 100.0),
    }
}

fn format_tolerance(verdict: &MetricVerdict) -> String {
    match (verdict.tolerance, verdict.kind) {
        (None, _) => "-".to_owned(),
        (Some(tolerance), GateKind::Counter) => format!("±{tolerance:.0}"),
        (Some(tolerance), _) => format!("{:.0} %", tolerance * 100.0),
    }
}

fn format_p(p_value: Option<f64>) -> String {
    p_value.map_or_else(|| "-".to_owned(), |p| format!("{p:.4}"))
}

/// Returns one sentence for a failure message: the metric, baseline, new value, change,
/// tolerance and p-value.
pub fn describe_verdict(verdict: &MetricVerdict) -> String {
    let state = verdict.verdict.as_str();
    match verdict.kind {
        GateKind::Relative => format!(
            "{} {state}: baseline {}, new {}, change {} (tolerance {}), p = {}",
            verdict.metric,
            format_value(verdict, verdict.baseline),
            format_value(verdict, verdict.new),
            format_change(verdict),
            format_tolerance(verdict),
            format_p(verdict.p_value),
        ),
        GateKind::Counter => format!(
            "{} {state}: baseline {}, new {}, change {} (tolerance {})",
            verdict.metric,
            format_value(verdict, verdict.baseline),
            format_value(verdict, verdict.new),
            format_change(verdict),
            format_tolerance(verdict),
        ),
        GateKind::Limit => format!(
            "limit {} {state}: worst repetition {}",
            verdict.metric,
            format_value(verdict, verdict.new),
        ),
    }
}

/// Returns the terminal line of one gated metric, such as
/// `  ttft.p50   20.531 ms  (baseline 20.412 ms)  change +0.58 %  p = 0.4206  tol 15 %  pass`.
pub fn verdict_line(verdict: &MetricVerdict) -> String {
    let marker = match verdict.verdict {
        Verdict::Regressed => "REGRESSED",
        Verdict::Improved => "improved",
        Verdict::Pass => "pass",
        Verdict::NoBaseline => "no baseline",
        Verdict::NotEnoughData => "not enough data",
    };
    let mut line = match verdict.kind {
        GateKind::Limit => format!(
            "  {:<36} {:>14}  (limit)  {marker}",
            verdict.metric,
            format_value(verdict, verdict.new),
        ),
        _ => format!(
            "  {:<36} {:>14}  (baseline {:>14})  change {:>9}  p = {:<6}  tol {:>5}  {marker}",
            verdict.metric,
            format_value(verdict, verdict.new),
            format_value(verdict, verdict.baseline),
            format_change(verdict),
            format_p(verdict.p_value),
            format_tolerance(verdict),
        ),
    };
    if let Some(note) = &verdict.note {
        line.push_str(&format!(" ({note})"));
    }
    line
}
