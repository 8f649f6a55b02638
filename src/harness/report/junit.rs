//! JUnit XML: one testcase per scenario, the failure message naming each regressed metric,
//! and every metric's values in `system-out`.

use std::path::Path;

use junit_report::{Duration, OffsetDateTime, ReportBuilder, TestCaseBuilder, TestSuiteBuilder};

use super::super::judge::ScenarioReport;
use super::terminal::verdict_line;

/// Returns the JUnit `system-out` of a scenario: its verdict lines and each repetition's
/// values.
fn system_out(report: &ScenarioReport) -> String {
    let mut out = String::new();
    for verdict in &report.verdicts {
        out.push_str(&verdict_line(verdict));
        out.push('\n');
    }
    for (index, repetition) in report.repetitions.iter().enumerate() {
        out.push_str(&format!("repetition {}:", index + 1));
        for (name, value) in &repetition.metrics {
            out.push_str(&format!(" {name}={value:.3}"));
        }
        for (name, value) in &repetition.counters {
            out.push_str(&format!(" {name}={value}"));
        }
        out.push('\n');
    }
    if report.blessed {
        out.push_str(&format!(
            "baseline written to {}\n",
            report.baseline_path.display()
        ));
    }
    out
}

/// Writes the JUnit file for `reports` to `path`, replacing it.
pub fn write_junit(reports: &[ScenarioReport], path: &Path) -> std::io::Result<()> {
    let target = reports
        .first()
        .map_or("mock", |report| report.target.as_str());
    let mut suite = TestSuiteBuilder::new(&format!("clawperf perf scenarios on {target}"));
    suite.set_timestamp(OffsetDateTime::now_utc());
    for report in reports {
        let time = Duration::seconds_f64(report.duration_s);
        let mut case = match &report.failure {
            None => TestCaseBuilder::success(&report.name, time),
            Some(message) => TestCaseBuilder::failure(&report.name, time, "regression", message),
        };
        case.set_classname(&format!("clawperf.{}", report.target));
        case.set_system_out(&system_out(report));
        suite.add_testcase(case.build());
    }
    let junit = ReportBuilder::new().add_testsuite(suite.build()).build();
    let mut bytes = Vec::new();
    junit.write_xml(&mut bytes).map_err(std::io::Error::other)?;
    super::super::baseline::write_atomically(path, &bytes)
}
