//! The `async` scenario form: a function that receives a [`TargetHandle`], drives its own
//! traffic and returns [`Measurements`].

use std::collections::BTreeMap;
use std::time::Duration;

use url::Url;

use crate::gate::Gates;
use crate::mock::MockStats;
use crate::result::RunResult;
use crate::runner::{self, RunError};
use crate::stats::LatencyHistogram;
use crate::tokenizer::Tokenizer;

use super::measure::summarize_run;
use super::scenario::Workload;
use super::target::{RepetitionTarget, build_run_config};

/// Error type of an `async` scenario; any error that converts into it (such as
/// `anyhow::Error` or `std::io::Error`) can be returned with `?`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The target of one repetition, handed to an `async` scenario.
pub struct TargetHandle {
    pub(super) target: RepetitionTarget,
}

impl TargetHandle {
    /// Returns the OpenAI-compatible `/v1` base URL.
    pub fn base_url(&self) -> &Url {
        &self.target.base_url
    }

    /// Returns the chat-completions URL.
    pub fn chat_url(&self) -> &Url {
        &self.target.chat_url
    }

    pub fn model(&self) -> &str {
        &self.target.model
    }

    /// Returns the API key of a real target (`CLAWPERF_API_KEY`); never log it.
    pub fn api_key(&self) -> Option<&str> {
        self.target.api_key.as_deref()
    }

    /// Returns the tokenizer that the target counts tokens with.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.target.tokenizer
    }

    /// Returns an HTTP client set up for the target (TLS options included).
    pub fn http(&self) -> &reqwest::Client {
        &self.target.http
    }

    /// Returns the embedded mock's counters, or `None` for a real target.
    pub fn mock_stats(&self) -> Option<MockStats> {
        self.target.mock.as_ref().map(|mock| mock.stats())
    }

    /// Runs a workload against the target, as the declarative form does.
    pub async fn run(&self, workload: &Workload, seed: u64) -> Result<RunResult, BoxError> {
        let mut workload = workload.clone();
        workload.seed = seed;
        let config = build_run_config(&workload, &self.target)?;
        let result: Result<RunResult, RunError> = runner::run(config, None).await;
        Ok(result?)
    }
}

/// The values one repetition of an `async` scenario measured. Each latency series is gated at
/// `avg`, `p50`, `p90` and `p99` as `<name>.avg` and so on, each counter exactly.
///
/// ```
/// use std::time::Duration;
/// use clawperf::harness::Measurements;
///
/// let mut measurements = Measurements::new();
/// measurements.record_latency("models_list", Duration::from_millis(3));
/// measurements.add_counter("requests", 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Measurements {
    pub(super) latencies: BTreeMap<String, LatencyHistogram>,
    pub(super) values: BTreeMap<String, f64>,
    pub(super) counters: BTreeMap<String, u64>,
    /// Histograms of [`add_run`](Self::add_run), stored with the baseline but gated through
    /// the run's own values.
    pub(super) run_histograms: BTreeMap<String, LatencyHistogram>,
    /// The gates, taken from the first repetition.
    pub(super) gates: Gates,
}

impl Measurements {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one latency sample of the series `name`.
    pub fn record_latency(&mut self, name: &str, latency: Duration) {
        self.latencies
            .entry(name.to_owned())
            .or_default()
            .record(latency);
    }

    /// Adds `count` to the counter `name`. A counter named `errors` counts failed requests:
    /// a repetition with errors is never blessed.
    pub fn add_counter(&mut self, name: &str, count: u64) {
        *self.counters.entry(name.to_owned()).or_default() += count;
    }

    /// Sets a single value, compared like a latency (or like throughput when its name
    /// starts with `throughput`).
    pub fn set_value(&mut self, name: &str, value: f64) {
        self.values.insert(name.to_owned(), value);
    }

    /// Sets the relative tolerance of a metric (`itl.p99`), a series (`itl.*`) or a statistic
    /// (`*.p99`), as [`Scenario::tolerance`](super::Scenario::tolerance) does.
    pub fn tolerance(&mut self, metric: &str, fraction: f64) {
        self.gates.tolerances.insert(metric.to_owned(), fraction);
    }

    /// Records a metric or counter without gating it.
    pub fn ungated(&mut self, name: &str) {
        self.gates.ungated.insert(name.to_owned());
    }

    /// Adds everything a [`TargetHandle::run`] measured: the same metrics, counters and
    /// histograms as a declarative scenario. Counters add up; the values of a later run
    /// replace an earlier run's.
    pub fn add_run(&mut self, result: &RunResult) {
        let measured = summarize_run(result);
        self.values.extend(measured.summary.metrics);
        for (name, count) in measured.summary.counters {
            self.add_counter(&name, count);
        }
        for (name, histogram) in measured.histograms {
            self.run_histograms.entry(name).or_default().add(&histogram);
        }
    }
}
