//! Decides a scenario's outcome from its run and its baseline, and applies the blessing
//! rules: write the baseline under `CLAWPERF_BLESS=1`, never write anything when `CI` is
//! set, and otherwise leave a pending `<scenario>.json.new` beside a baseline that no longer
//! matches.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error_chain::error_chain;
use crate::gate::{self, MetricVerdict, RepetitionSummary, Verdict};

use super::baseline::{
    BASELINE_SCHEMA_VERSION, Baseline, BaselineError, RecordedRepetition, file_name,
};
use super::env::{HarnessEnv, MockKnobs, TargetSpec};
use super::execute::ScenarioRun;
use super::report::describe_verdict;

/// The outcome of one scenario. The reports (JUnit, Markdown, JSON) are built from these.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioReport {
    pub name: String,
    pub target: String,
    pub passed: bool,
    pub duration_s: f64,
    /// The failure message, ready to print.
    pub failure: Option<String>,
    pub verdicts: Vec<MetricVerdict>,
    pub repetitions: Vec<RepetitionSummary>,
    pub baseline_path: PathBuf,
    /// True when this run wrote the baseline.
    pub blessed: bool,
    /// The pending `.json.new` this run left, if any.
    pub pending_path: Option<PathBuf>,
}

/// Returns `<baseline>.new`.
pub fn pending_path(baseline: &Path) -> PathBuf {
    let mut path = baseline.as_os_str().to_owned();
    path.push(".new");
    PathBuf::from(path)
}

/// Returns the failed report of a scenario that could not run.
pub fn failed_to_run(
    name: &str,
    env: &HarnessEnv,
    duration_s: f64,
    err: &dyn std::error::Error,
) -> ScenarioReport {
    ScenarioReport {
        name: name.to_owned(),
        target: env.target_name.clone(),
        passed: false,
        duration_s,
        failure: Some(format!("{name} could not run: {}", error_chain(err))),
        verdicts: Vec::new(),
        repetitions: Vec::new(),
        baseline_path: env.baselines_dir.join(file_name(name)),
        blessed: false,
        pending_path: None,
    }
}

/// Compares `run` with the scenario's baseline, blesses or leaves a pending file as the
/// environment requests, and returns the report.
pub fn judge(name: &str, run: ScenarioRun, env: &HarnessEnv, duration_s: f64) -> ScenarioReport {
    let baseline_path = env.baselines_dir.join(file_name(name));
    let pending = pending_path(&baseline_path);
    let summaries: Vec<RepetitionSummary> = run
        .repetitions
        .iter()
        .map(|measured| measured.summary.clone())
        .collect();
    let mut report = ScenarioReport {
        name: name.to_owned(),
        target: env.target_name.clone(),
        passed: false,
        duration_s,
        failure: None,
        verdicts: Vec::new(),
        repetitions: summaries.clone(),
        baseline_path: baseline_path.clone(),
        blessed: false,
        pending_path: None,
    };

    let failed_requests: u64 = run
        .repetitions
        .iter()
        .map(|measured| measured.errors())
        .sum();
    let new_baseline = match build_baseline(name, env, &run) {
        Ok(baseline) => baseline,
        Err(err) => {
            report.failure = Some(format!("{name}: {}", error_chain(&err)));
            return report;
        }
    };
    let old_baseline = match Baseline::load(&baseline_path) {
        Ok(baseline) => baseline,
        Err(err) if env.bless && !env.ci => {
            tracing::warn!(error = %error_chain(&err), "replacing an unreadable baseline");
            None
        }
        Err(err) => {
            report.failure = Some(format!("{name}: {}", error_chain(&err)));
            return report;
        }
    };
    let stale = old_baseline
        .as_ref()
        .is_some_and(|baseline| baseline.workload != new_baseline.workload);
    let comparable = old_baseline
        .as_ref()
        .filter(|_| !stale)
        .map(Baseline::summaries);
    report.verdicts = gate::compare(comparable.as_deref(), &summaries, &run.gates);

    if env.bless && !env.ci {
        if failed_requests > 0 {
            report.failure = Some(format!(
                "{name}: not blessed, because {failed_requests} requests failed; a baseline must \
                 come from a clean run (see the errors in the result JSON)"
            ));
            return report;
        }
        if let TargetSpec::Mock(knobs) = &env.target
            && *knobs != MockKnobs::default()
        {
            // A baseline recorded from a deliberately slowed or cache-less mock would hide
            // the very regression the knobs simulate in every later run.
            report.failure = Some(format!(
                "{name}: not blessed, because a CLAWPERF_MOCK_* variable changes the mock \
                 ({knobs:?}); unset it and bless again"
            ));
            return report;
        }
        if let Err(err) = new_baseline.write(&baseline_path) {
            report.failure = Some(format!("{name}: {}", error_chain(&err)));
            return report;
        }
        remove_pending(&pending);
        report.blessed = true;
        report.passed = true;
        return report;
    }
    if env.bless {
        tracing::warn!("CLAWPERF_BLESS is ignored because CI is set: nothing is written in CI");
    }

    let problems = problems(
        &report.verdicts,
        old_baseline.is_none(),
        stale,
        &shown(&baseline_path, env),
    );
    let mismatch = !problems.is_empty()
        || report
            .verdicts
            .iter()
            .any(|verdict| verdict.verdict == Verdict::Improved);
    report.passed = problems.is_empty();

    if !env.ci {
        if mismatch && failed_requests == 0 {
            match new_baseline.write(&pending) {
                Ok(()) => report.pending_path = Some(pending.clone()),
                Err(err) => {
                    tracing::warn!(error = %error_chain(&err), "failed to write the pending baseline")
                }
            }
        } else if !mismatch {
            remove_pending(&pending);
        }
    }
    if !report.passed {
        report.failure = Some(failure_message(
            name,
            &problems,
            &report,
            env,
            failed_requests,
        ));
    }
    report
}

/// Returns `path` relative to the package directory when it lies inside it, which is how a
/// developer types it in the `mv` the failure message suggests.
fn shown(path: &Path, env: &HarnessEnv) -> String {
    path.strip_prefix(&env.package_dir)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn remove_pending(pending: &Path) {
    match std::fs::remove_file(pending) {
        Ok(()) => {
            tracing::debug!(path = %pending.display(), "removed the outdated pending baseline")
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            tracing::warn!(path = %pending.display(), error = %err, "failed to remove the pending baseline")
        }
    }
}

fn build_baseline(
    name: &str,
    env: &HarnessEnv,
    run: &ScenarioRun,
) -> Result<Baseline, BaselineError> {
    let repetitions = run
        .repetitions
        .iter()
        .map(RecordedRepetition::from_measured)
        .collect::<Result<_, _>>()?;
    Ok(Baseline {
        schema_version: BASELINE_SCHEMA_VERSION,
        scenario: name.to_owned(),
        target: env.target_name.clone(),
        workload: run.workload.clone(),
        environment: run.environment.clone(),
        repetitions,
    })
}

/// Returns one line per reason to fail: each regressed metric, or a missing or stale
/// baseline.
fn problems(
    verdicts: &[MetricVerdict],
    missing: bool,
    stale: bool,
    baseline_path: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    if missing {
        problems.push(format!("no baseline at {baseline_path}"));
    } else if stale {
        problems.push(format!(
            "the baseline at {baseline_path} was recorded for a different workload"
        ));
    }
    for verdict in verdicts
        .iter()
        .filter(|verdict| verdict.verdict == Verdict::Regressed)
    {
        problems.push(describe_verdict(verdict));
    }
    problems
}

fn failure_message(
    name: &str,
    problems: &[String],
    report: &ScenarioReport,
    env: &HarnessEnv,
    failed_requests: u64,
) -> String {
    let regressed = report
        .verdicts
        .iter()
        .filter(|verdict| verdict.verdict == Verdict::Regressed)
        .map(|verdict| verdict.metric.as_str())
        .collect::<Vec<_>>();
    let mut message = if regressed.is_empty() {
        format!("{name} failed on target {}:\n", env.target_name)
    } else {
        format!(
            "{name} regressed on target {}: {}\n",
            env.target_name,
            regressed.join(", ")
        )
    };
    for problem in problems {
        message.push_str(&format!("  {problem}\n"));
    }
    let rerun = format!("CLAWPERF_BLESS=1 cargo test --test perf -- --exact {name}");
    match (&report.pending_path, env.ci) {
        (_, true) => message.push_str(&format!(
            "CI is set, so nothing was written. If the change is intended, re-record the baseline \
             locally with `{rerun}` and commit it.\n"
        )),
        (Some(pending), false) => message.push_str(&format!(
            "The new values are in {pending}. If the change is intended, accept them with\n  \
             mv {pending} {baseline}\nor re-record with `{rerun}`.\n",
            pending = shown(pending, env),
            baseline = shown(&report.baseline_path, env),
        )),
        (None, false) if failed_requests > 0 => message.push_str(&format!(
            "{failed_requests} requests failed, so no pending baseline was written; a baseline \
             must come from a clean run.\n"
        )),
        (None, false) => message.push_str(&format!(
            "If the change is intended, re-record the baseline with `{rerun}`.\n"
        )),
    }
    message
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::gate::Gates;
    use crate::harness::baseline::Environment;
    use crate::harness::env::{MockKnobs, TargetSpec};
    use crate::harness::measure::Measured;

    fn env(dir: &Path, bless: bool, ci: bool) -> HarnessEnv {
        HarnessEnv {
            target: TargetSpec::Mock(MockKnobs::default()),
            package_dir: dir.to_owned(),
            target_name: "mock".to_owned(),
            bless,
            ci,
            baselines_dir: dir.join("baselines").join("mock"),
            output_dir: dir.join("out"),
            junit_path: dir.join("out").join("junit.xml"),
            step_summary: None,
            nextest_run_id: None,
        }
    }

    /// Builds a run whose repetitions have about `ttft_ms`, and exactly `hits` and `errors`.
    fn run(ttft_ms: f64, hits: u64, errors: u64) -> ScenarioRun {
        let repetition = Measured {
            summary: RepetitionSummary {
                metrics: BTreeMap::from([("ttft.p50".to_owned(), ttft_ms)]),
                counters: BTreeMap::from([
                    ("errors".to_owned(), errors),
                    ("requests".to_owned(), 4),
                    ("prefix_cache_hit_tokens".to_owned(), hits),
                ]),
            },
            histograms: BTreeMap::new(),
        };
        let jitter = [0.0, 0.1, -0.1, 0.2, -0.2];
        ScenarioRun {
            workload: serde_json::json!({ "workload": "test" }),
            gates: Gates::default(),
            repetitions: jitter
                .iter()
                .map(|delta| {
                    let mut repetition = repetition.clone();
                    repetition
                        .summary
                        .metrics
                        .insert("ttft.p50".to_owned(), ttft_ms + delta);
                    repetition
                })
                .collect(),
            results: Vec::new(),
            environment: Environment {
                clawperf_version: "0.1.0".to_owned(),
                git_revision: None,
                cpu_model: None,
                cpu_count: 2,
                os: "linux-x86_64".to_owned(),
                target_model: Some("mock".to_owned()),
                server_version: None,
            },
        }
    }

    const NAME: &str = "chat::single_user";

    fn baseline_file(dir: &Path) -> PathBuf {
        dir.join("baselines/mock/chat.single_user.json")
    }

    #[test]
    fn bless_writes_and_passes() {
        let dir = tempfile::tempdir().unwrap();
        let report = judge(NAME, run(20.0, 100, 0), &env(dir.path(), true, false), 1.0);
        assert!(report.passed, "{:?}", report.failure);
        assert!(report.blessed);
        let written = Baseline::load(&baseline_file(dir.path())).unwrap().unwrap();
        assert_eq!(written.repetitions.len(), 5);
        assert_eq!(written.schema_version, BASELINE_SCHEMA_VERSION);
    }

    #[test]
    fn bless_replaces_a_baseline() {
        let dir = tempfile::tempdir().unwrap();
        judge(NAME, run(20.0, 100, 0), &env(dir.path(), true, false), 1.0);
        judge(NAME, run(30.0, 100, 0), &env(dir.path(), true, false), 1.0);
        let written = Baseline::load(&baseline_file(dir.path())).unwrap().unwrap();
        assert_eq!(written.repetitions[0].metrics["ttft.p50"], 30.0);
    }

    #[test]
    fn failed_requests_are_never_blessed() {
        let dir = tempfile::tempdir().unwrap();
        let report = judge(NAME, run(20.0, 100, 1), &env(dir.path(), true, false), 1.0);
        assert!(!report.passed);
        assert!(report.failure.unwrap().contains("not blessed"));
        assert!(!baseline_file(dir.path()).exists());
    }

    #[test]
    fn changed_mock_is_never_blessed() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = env(dir.path(), true, false);
        env.target = TargetSpec::Mock(MockKnobs {
            ttft_scale: 1.3,
            ..MockKnobs::default()
        });
        let report = judge(NAME, run(20.0, 100, 0), &env, 1.0);
        assert!(!report.passed);
        assert!(report.failure.unwrap().contains("CLAWPERF_MOCK_"));
        assert!(!baseline_file(dir.path()).exists());
    }

    #[test]
    fn ci_never_writes() {
        let dir = tempfile::tempdir().unwrap();
        let report = judge(NAME, run(20.0, 100, 0), &env(dir.path(), true, true), 1.0);
        assert!(!report.passed, "a missing baseline fails in CI");
        assert!(!baseline_file(dir.path()).exists());
        assert!(!pending_path(&baseline_file(dir.path())).exists());
        assert!(report.failure.unwrap().contains("CI is set"));
    }

    #[test]
    fn ci_fails_on_regression_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        judge(NAME, run(20.0, 100, 0), &env(dir.path(), true, false), 1.0);
        let before = std::fs::read(baseline_file(dir.path())).unwrap();
        let report = judge(NAME, run(30.0, 100, 0), &env(dir.path(), false, true), 1.0);
        let failure = report.failure.unwrap();
        assert!(failure.contains("ttft.p50 regressed"), "{failure}");
        assert_eq!(std::fs::read(baseline_file(dir.path())).unwrap(), before);
        assert!(!pending_path(&baseline_file(dir.path())).exists());
    }

    #[test]
    fn local_mismatch_leaves_pending_file() {
        let dir = tempfile::tempdir().unwrap();
        judge(NAME, run(20.0, 100, 0), &env(dir.path(), true, false), 1.0);
        let report = judge(NAME, run(20.0, 0, 0), &env(dir.path(), false, false), 1.0);
        let failure = report.failure.unwrap();
        assert!(
            failure.contains("prefix_cache_hit_tokens regressed"),
            "{failure}"
        );
        let pending = pending_path(&baseline_file(dir.path()));
        assert!(pending.exists());
        assert!(
            failure.contains("mv baselines/mock/chat.single_user.json.new"),
            "{failure}"
        );

        let report = judge(NAME, run(20.0, 100, 0), &env(dir.path(), false, false), 1.0);
        assert!(report.passed, "{:?}", report.failure);
        assert!(
            !pending.exists(),
            "a passing run removes the outdated pending file"
        );
    }

    #[test]
    fn changed_workload_makes_baseline_stale() {
        let dir = tempfile::tempdir().unwrap();
        judge(NAME, run(20.0, 100, 0), &env(dir.path(), true, false), 1.0);
        let mut changed = run(20.0, 100, 0);
        changed.workload = serde_json::json!({ "workload": "other" });
        let report = judge(NAME, changed, &env(dir.path(), false, false), 1.0);
        assert!(report.failure.unwrap().contains("different workload"));
    }
}
