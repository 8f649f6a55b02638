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
            Some(message) => {
                // XML parsers turn the line breaks of an attribute into spaces, so the
                // message is repeated as the failure's text, where they survive.
                let mut case = TestCaseBuilder::failure(&report.name, time, "regression", message);
                case.set_trace(message);
                case
            }
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn report(name: &str, failure: Option<&str>) -> ScenarioReport {
        ScenarioReport {
            name: name.to_owned(),
            target: "mock".to_owned(),
            passed: failure.is_none(),
            duration_s: 1.5,
            failure: failure.map(str::to_owned),
            verdicts: Vec::new(),
            repetitions: Vec::new(),
            baseline_path: PathBuf::from("baselines/mock/x.json"),
            blessed: false,
            pending_path: None,
        }
    }

    #[test]
    fn junit_counts_and_failure_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junit.xml");
        let message = "chat::a regressed on target mock: ttft.p50\n  ttft.p50 regressed: baseline 20.000 ms, new 26.000 ms";
        write_junit(
            &[report("chat::a", Some(message)), report("chat::b", None)],
            &path,
        )
        .unwrap();

        let xml = std::fs::read_to_string(&path).unwrap();
        assert!(xml.contains(r#"tests="2""#), "{xml}");
        assert!(xml.contains(r#"failures="1""#), "{xml}");
        assert!(xml.contains(r#"<testcase name="chat::b""#), "{xml}");
        assert!(
            xml.contains("ttft.p50 regressed: baseline 20.000 ms"),
            "{xml}"
        );
        assert_eq!(xml.matches("<failure").count(), 1, "{xml}");
    }
}
