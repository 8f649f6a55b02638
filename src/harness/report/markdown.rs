//! The Markdown comparison table, for `$GITHUB_STEP_SUMMARY` and `summary.md`.

use crate::gate::Verdict;

use super::super::judge::ScenarioReport;
use super::terminal::format_value;

fn icon(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Pass => "✅ pass",
        Verdict::Improved => "🟢 improved",
        Verdict::Regressed => "❌ regressed",
        Verdict::NoBaseline => "⚪ no baseline",
        Verdict::NotEnoughData => "⚪ not enough data",
    }
}

/// Renders one table of every gated metric of `reports`, preceded by a one-line total.
pub fn render_markdown(reports: &[ScenarioReport]) -> String {
    let failed = reports.iter().filter(|report| !report.passed).count();
    let target = reports.first().map_or("-", |report| report.target.as_str());
    let noun = if reports.len() == 1 {
        "scenario"
    } else {
        "scenarios"
    };
    let mut markdown = format!(
        "### clawperf: {} {noun} on target `{target}`, {} passed, {failed} failed\n\n",
        reports.len(),
        reports.len() - failed,
    );
    markdown
        .push_str("| scenario | metric | baseline | new | change | tolerance | p | verdict |\n");
    markdown.push_str("|---|---|---:|---:|---:|---:|---:|---|\n");
    for report in reports {
        if report.verdicts.is_empty() {
            let reason = report
                .failure
                .as_deref()
                .unwrap_or("no metrics")
                .lines()
                .next()
                .unwrap_or_default();
            markdown.push_str(&format!(
                "| `{}` | - | | | | | | ❌ {} |\n",
                report.name,
                escape(reason)
            ));
        }
        for verdict in &report.verdicts {
            let change = match (verdict.change, verdict.kind) {
                (None, _) => String::new(),
                (Some(change), crate::gate::GateKind::Counter) => format!("{change:+.0}"),
                (Some(change), _) => format!("{:+.1} %", change * 100.0),
            };
            let tolerance = match (verdict.tolerance, verdict.kind) {
                (None, _) => String::new(),
                (Some(tolerance), crate::gate::GateKind::Counter) => format!("±{tolerance:.0}"),
                (Some(tolerance), _) => format!("{:.0} %", tolerance * 100.0),
            };
            markdown.push_str(&format!(
                "| `{}` | `{}` | {} | {} | {} | {} | {} | {} |\n",
                report.name,
                escape(&verdict.metric),
                format_value(verdict, verdict.baseline),
                format_value(verdict, verdict.new),
                change,
                tolerance,
                verdict
                    .p_value
                    .map_or_else(String::new, |p| format!("{p:.4}")),
                icon(verdict.verdict),
            ));
        }
    }
    markdown.push('\n');
    markdown
}

fn escape(text: &str) -> String {
    text.replace('|', "\\|")
}
