//! Runs one scenario's repetitions, each against a fresh target, on the scenario's own tokio
//! runtime.

use std::path::Path;

use crate::gate::{Gates, RepetitionSummary};
use crate::result::RunResult;
use crate::runner::{self, RunError};

use super::baseline::Environment;
use super::custom::{BoxError, TargetHandle};
use super::env::{HarnessEnv, TargetSpec};
use super::fingerprint;
use super::measure::{Measured, summarize_measurements, summarize_run};
use super::registry::{Registration, ScenarioBody};
use super::scenario::{MockTarget, Scenario};
use super::target::{RepetitionTarget, TargetError, build_run_config};
use crate::config::ConfigError;

/// Everything one scenario measured.
pub struct ScenarioRun {
    /// The run's description, as recorded in the baseline's `workload`.
    pub workload: serde_json::Value,
    pub gates: Gates,
    pub repetitions: Vec<Measured>,
    /// The standard result JSON of each repetition (declarative scenarios only).
    pub results: Vec<RunResult>,
    pub environment: Environment,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error("the scenario asks for 0 repetitions; set at least 1 (5 lets the gate decide)")]
    NoRepetitions,
    #[error("repetition {repetition}: failed to start the target")]
    Target {
        repetition: usize,
        #[source]
        source: TargetError,
    },
    #[error("repetition {repetition}: invalid workload")]
    Config {
        repetition: usize,
        #[source]
        source: ConfigError,
    },
    #[error("repetition {repetition}: the run failed")]
    Run {
        repetition: usize,
        #[source]
        source: RunError,
    },
    #[error("repetition {repetition}: the scenario returned an error")]
    Custom {
        repetition: usize,
        #[source]
        source: BoxError,
    },
    #[error("failed to start the tokio runtime")]
    Runtime(#[source] std::io::Error),
}

/// Runs every repetition of `registration` on a new multi-threaded tokio runtime.
pub fn run_scenario(
    registration: &Registration,
    env: &HarnessEnv,
    package_dir: &Path,
) -> Result<ScenarioRun, ExecuteError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ExecuteError::Runtime)?;
    runtime.block_on(async {
        match registration.body {
            ScenarioBody::Declarative(build) => run_declarative(build(), env, package_dir).await,
            ScenarioBody::Custom { run, repetitions } => {
                let workload = serde_json::json!({
                    "custom": registration.name(),
                    "repetitions": repetitions,
                });
                run_custom(run, repetitions, workload, env, package_dir).await
            }
        }
    })
}

async fn run_declarative(
    scenario: Scenario,
    env: &HarnessEnv,
    package_dir: &Path,
) -> Result<ScenarioRun, ExecuteError> {
    if scenario.repetitions == 0 {
        return Err(ExecuteError::NoRepetitions);
    }
    let workload = serde_json::json!({
        "workload": scenario.workload,
        "mock": scenario.mock,
        "repetitions": scenario.repetitions,
    });
    let mut repetitions = Vec::with_capacity(scenario.repetitions);
    let mut results = Vec::with_capacity(scenario.repetitions);
    let mut environment = None;
    for repetition in 0..scenario.repetitions {
        let seed = scenario.workload.seed.wrapping_add(repetition as u64);
        let target = start_target(env, &scenario.mock, seed, repetition).await?;
        if environment.is_none() {
            environment = Some(fingerprint::collect(package_dir, &target).await);
        }
        let result = run_repetition(&scenario, target, seed, repetition).await?;
        repetitions.push(summarize_run(&result));
        results.push(result);
    }
    Ok(ScenarioRun {
        workload,
        gates: scenario.gates,
        repetitions,
        results,
        environment: environment.expect("at least one repetition ran"),
    })
}

/// Runs repetition `repetition` of `scenario` with `seed` against `target`, then stops it.
async fn run_repetition(
    scenario: &Scenario,
    target: RepetitionTarget,
    seed: u64,
    repetition: usize,
) -> Result<RunResult, ExecuteError> {
    let mut workload = scenario.workload.clone();
    workload.seed = seed;
    let config = match build_run_config(&workload, &target) {
        Ok(config) => config,
        Err(source) => {
            target.stop().await;
            return Err(ExecuteError::Config { repetition, source });
        }
    };
    let result = runner::run(config, None).await;
    target.stop().await;
    result.map_err(|source| ExecuteError::Run { repetition, source })
}

/// Runs every repetition of a declarative scenario against `target` and returns what each
/// measured, without baselines or reports. The gate's self-test compares such series.
pub async fn measure(
    scenario: &Scenario,
    target: &TargetSpec,
) -> Result<Vec<RepetitionSummary>, ExecuteError> {
    let mut repetitions = Vec::with_capacity(scenario.repetitions);
    for repetition in 0..scenario.repetitions {
        let seed = scenario.workload.seed.wrapping_add(repetition as u64);
        let started = RepetitionTarget::start(target, &scenario.mock, seed)
            .await
            .map_err(|source| ExecuteError::Target { repetition, source })?;
        let result = run_repetition(scenario, started, seed, repetition).await?;
        repetitions.push(summarize_run(&result).summary);
    }
    Ok(repetitions)
}

async fn run_custom(
    run: fn(TargetHandle) -> super::registry::CustomFuture,
    count: usize,
    workload: serde_json::Value,
    env: &HarnessEnv,
    package_dir: &Path,
) -> Result<ScenarioRun, ExecuteError> {
    if count == 0 {
        return Err(ExecuteError::NoRepetitions);
    }
    let mut repetitions = Vec::with_capacity(count);
    let mut environment = None;
    let mut gates = None;
    for repetition in 0..count {
        let target =
            start_target(env, &MockTarget::default(), repetition as u64, repetition).await?;
        if environment.is_none() {
            environment = Some(fingerprint::collect(package_dir, &target).await);
        }
        let handle = TargetHandle { target };
        // The handle moves into the scenario, which drops it (and so stops the mock) at its end.
        let measurements = run(handle)
            .await
            .map_err(|source| ExecuteError::Custom { repetition, source })?;
        let (measured, repetition_gates) = summarize_measurements(measurements);
        gates.get_or_insert(repetition_gates);
        repetitions.push(measured);
    }
    Ok(ScenarioRun {
        workload,
        gates: gates.unwrap_or_default(),
        repetitions,
        results: Vec::new(),
        environment: environment.expect("at least one repetition ran"),
    })
}

async fn start_target(
    env: &HarnessEnv,
    mock: &MockTarget,
    seed: u64,
    repetition: usize,
) -> Result<RepetitionTarget, ExecuteError> {
    RepetitionTarget::start(&env.target, mock, seed)
        .await
        .map_err(|source| ExecuteError::Target { repetition, source })
}
