//! The regression harness: performance scenarios written like tests, compared with stored
//! baselines, reported as JUnit XML, JSON and Markdown.
//!
//! A scenario is a function marked `#[clawperf::scenario]` in a test target with
//! `harness = false` whose `main` calls [`main`]:
//!
//! ```no_run
//! use clawperf::harness::{Scenario, Workload};
//!
//! #[clawperf::scenario]
//! fn two_users() -> Scenario {
//!     Scenario::new(Workload {
//!         num_users: 2,
//!         max_turns: 4,
//!         ..Workload::default()
//!     })
//! }
//!
//! fn main() {
//!     clawperf::harness::main()
//! }
//! ```
//!
//! The `async` form drives its own traffic against the target of each repetition and
//! returns what it measured:
//!
//! ```no_run
//! use std::time::Instant;
//! use clawperf::harness::{BoxError, Measurements, TargetHandle};
//!
//! #[clawperf::scenario(repetitions = 5)]
//! async fn list_models(target: TargetHandle) -> Result<Measurements, BoxError> {
//!     let mut measurements = Measurements::new();
//!     let started = Instant::now();
//!     target.http().get(target.base_url().join("models")?).send().await?.error_for_status()?;
//!     measurements.record_latency("models", started.elapsed());
//!     Ok(measurements)
//! }
//! # fn main() {}
//! ```
//!
//! Each scenario runs its repetitions one after another on its own tokio runtime, each
//! against a fresh embedded mock server unless `CLAWPERF_ENDPOINT` names a real stack. The
//! repetitions are compared with `baselines/<target>/<scenario>.json` by [`crate::gate`].

mod baseline;
mod custom;
mod env;
mod execute;
mod fingerprint;
mod judge;
mod measure;
mod registry;
mod report;
mod scenario;
mod target;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use libtest_mimic::{Arguments, Failed, Trial};

pub use baseline::{
    BASELINE_SCHEMA_VERSION, Baseline, BaselineError, Environment, RecordedRepetition,
};
pub use custom::{BoxError, Measurements, TargetHandle};
pub use env::{EnvError, HarnessEnv, MockKnobs, RemoteTarget, TargetSpec};
pub use execute::{ExecuteError, measure};
pub use judge::ScenarioReport;
pub use registry::{Registration, ScenarioBody, scenarios};
pub use scenario::{DEFAULT_REPETITIONS, MockTarget, Scenario, Workload};

use crate::error_chain::error_chain;
use report::ReportStore;

/// Exit code when the scenarios ran but the reports could not be written. It is libtest's
/// failure code, so CI treats it as a failed test run.
const EXIT_REPORT_FAILED: i32 = 101;

/// Support for the `#[clawperf::scenario]` expansion; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use inventory::submit;

    pub use super::custom::{BoxError, Measurements, TargetHandle};
    pub use super::registry::{CustomFuture, Registration, ScenarioBody};
    pub use super::scenario::Scenario;

    /// Boxes an `async` scenario's future and converts its error.
    pub fn custom<F, E>(future: F) -> CustomFuture
    where
        F: std::future::Future<Output = Result<Measurements, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        Box::pin(async move { future.await.map_err(Into::into) })
    }
}

/// Runs the registered scenarios as a libtest-compatible test binary (`--list`, filters,
/// `--exact`, `--ignored`, `--include-ignored`), one at a time, then writes the reports and
/// exits with 0 when every scenario passed and 101 otherwise.
pub fn main() -> ! {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();

    let mut args = Arguments::from_args();
    // Scenarios measure latency, so two must never share the machine.
    args.test_threads = Some(1);
    let env = HarnessEnv::from_env().map_err(|err| format!("error: {}", error_chain(&err)));
    let reports: Arc<Mutex<Vec<ScenarioReport>>> = Arc::default();
    let trials = scenarios()
        .into_iter()
        .map(|registration| {
            let env = env.clone();
            let reports = Arc::clone(&reports);
            Trial::test(registration.name(), move || {
                let env = env.map_err(Failed::from)?;
                let report = run_trial(registration, &env);
                let failure = report.failure.clone();
                reports
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(report);
                failure.map_or(Ok(()), |message| Err(Failed::from(message)))
            })
            .with_ignored_flag(registration.ignored)
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);

    let reports = std::mem::take(&mut *reports.lock().unwrap_or_else(PoisonError::into_inner));
    if let (Ok(env), false) = (&env, reports.is_empty())
        && let Err(err) = write_reports(env, &reports)
    {
        eprintln!("error: {}", error_chain(&err));
        std::process::exit(EXIT_REPORT_FAILED);
    }
    conclusion.exit()
}

fn run_trial(registration: &Registration, env: &HarnessEnv) -> ScenarioReport {
    let name = registration.name();
    let started = Instant::now();
    println!();
    let run = execute::run_scenario(registration, env, &env.package_dir);
    let duration_s = started.elapsed().as_secs_f64();
    let report = match run {
        Ok(run) => {
            if let Err(err) =
                open_store(env).and_then(|store| store.write_results(&name, &run.results))
            {
                tracing::warn!(error = %error_chain(&err), "failed to write the result JSON");
            }
            judge::judge(&name, run, env, duration_s)
        }
        Err(err) => judge::failed_to_run(&name, env, duration_s, &err),
    };
    println!(
        "{name} ({} repetitions, {duration_s:.1} s, target {})",
        report.repetitions.len(),
        env.target_name
    );
    for verdict in &report.verdicts {
        println!("{}", report::verdict_line(verdict));
    }
    if report.blessed {
        println!("  baseline written to {}", report.baseline_path.display());
    }
    if let Some(pending) = &report.pending_path {
        println!("  pending baseline written to {}", pending.display());
    }
    if let Err(err) = open_store(env).and_then(|store| store.add(&report)) {
        tracing::warn!(error = %error_chain(&err), "failed to store the scenario report");
    }
    report
}

/// Returns this run's id: nextest's, shared by the processes of one `cargo nextest run`, or
/// one made from the process id and the start time.
fn run_id(env: &HarnessEnv) -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        env.nextest_run_id.clone().unwrap_or_else(|| {
            let millis = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            format!("{millis}-{}", std::process::id())
        })
    })
    .clone()
}

fn open_store(env: &HarnessEnv) -> Result<ReportStore, report::StoreError> {
    ReportStore::open(&env.output_dir, &run_id(env))
}

fn write_reports(env: &HarnessEnv, reports: &[ScenarioReport]) -> Result<(), report::StoreError> {
    let store = open_store(env)?;
    store.write_merged(&env.junit_path)?;
    println!("\nJUnit report: {}", env.junit_path.display());
    if let Some(path) = &env.step_summary {
        let markdown = report::render_markdown(reports);
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut file| std::io::Write::write_all(&mut file, markdown.as_bytes()));
        if let Err(source) = appended {
            return Err(report::StoreError {
                path: path.clone(),
                source,
            });
        }
    }
    Ok(())
}
