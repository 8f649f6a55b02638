//! The declarative scenario: a workload, the embedded mock's settings, the number of
//! repetitions and the gates.

use serde::{Deserialize, Serialize};

use crate::gate::{Gates, Limit};

/// The workload of one repetition: every option of the CLI's workload, with defaults small
/// enough that a repetition on the embedded mock takes well under a second. Token counts
/// are exact for the target's tokenizer (the built-in one, one token per byte, on the mock).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub num_users: usize,
    /// `burst`, `steady:<seconds>` or `poisson:<users per second>`.
    pub user_arrival: String,
    pub system_prefix_tokens: usize,
    /// `random`, or a text file whose first `system_prefix_tokens` tokens are the prefix.
    pub system_prefix_source: String,
    pub user_prefix_tokens: usize,
    pub input_tokens_per_turn: usize,
    pub output_tokens_per_turn: usize,
    pub max_context_tokens: usize,
    pub compaction_prefix_increment: usize,
    pub max_turns: usize,
    pub ignore_eos: bool,
    /// Timeout of one request in seconds.
    pub request_timeout_s: f64,
    /// Seconds between two scrapes of the metrics endpoint.
    pub metrics_interval_s: f64,
    /// Seed of the content and arrivals; repetition `i` (0-based) uses `seed + i`.
    pub seed: u64,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            num_users: 1,
            user_arrival: "burst".to_owned(),
            system_prefix_tokens: 200,
            system_prefix_source: "random".to_owned(),
            user_prefix_tokens: 50,
            input_tokens_per_turn: 50,
            output_tokens_per_turn: 16,
            max_context_tokens: 4000,
            compaction_prefix_increment: 50,
            max_turns: 3,
            ignore_eos: true,
            request_timeout_s: 60.0,
            metrics_interval_s: 5.0,
            seed: 0,
        }
    }
}

/// Settings of the embedded mock server that a scenario starts when no real target is
/// configured. The `CLAWPERF_MOCK_*` environment variables change them for a run (to
/// simulate a slower server) without changing the scenario that the baseline records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockTarget {
    /// Time to first token in milliseconds.
    pub ttft_ms: f64,
    /// Time per output token in milliseconds.
    pub tpot_ms: f64,
    pub prefix_caching: bool,
}

impl Default for MockTarget {
    fn default() -> Self {
        Self {
            ttft_ms: 20.0,
            tpot_ms: 5.0,
            prefix_caching: true,
        }
    }
}

/// Default number of repetitions: 5 per side lets the rank test reach p = 1/252.
pub const DEFAULT_REPETITIONS: usize = 5;

/// A performance scenario, as returned by a `#[clawperf::scenario]` function.
///
/// ```
/// use clawperf::harness::{Scenario, Workload};
///
/// let scenario = Scenario::new(Workload {
///     num_users: 2,
///     max_turns: 4,
///     ..Workload::default()
/// })
/// .repetitions(5)
/// .tolerance("ttft.p99", 0.25)
/// .limit_at_most("ttft.p99", 2000.0);
/// assert_eq!(scenario.repetitions, 5);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    pub workload: Workload,
    /// The embedded mock's settings; ignored when `CLAWPERF_ENDPOINT` names a real target.
    pub mock: MockTarget,
    pub repetitions: usize,
    pub gates: Gates,
}

impl Scenario {
    /// Returns a scenario of `workload` with 5 repetitions, the default mock and the default
    /// gates.
    pub fn new(workload: Workload) -> Self {
        Self {
            workload,
            mock: MockTarget::default(),
            repetitions: DEFAULT_REPETITIONS,
            gates: Gates::default(),
        }
    }

    pub fn repetitions(mut self, repetitions: usize) -> Self {
        self.repetitions = repetitions;
        self
    }

    pub fn mock(mut self, mock: MockTarget) -> Self {
        self.mock = mock;
        self
    }

    /// Sets the significance level of the one-sided test.
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.gates.alpha = alpha;
        self
    }

    /// Sets the relative tolerance of every latency metric (0.15 is 15 %).
    pub fn latency_tolerance(mut self, fraction: f64) -> Self {
        self.gates.latency_tolerance = fraction;
        self
    }

    /// Sets the relative tolerance of one metric (`ttft.p99`), of a series (`itl.*`) or of a
    /// statistic of every series (`*.p99`).
    pub fn tolerance(mut self, metric: &str, fraction: f64) -> Self {
        self.gates.tolerances.insert(metric.to_owned(), fraction);
        self
    }

    /// Lets a counter differ from the baseline's range by up to `tokens`.
    pub fn counter_tolerance(mut self, counter: &str, tokens: u64) -> Self {
        self.gates
            .counter_tolerances
            .insert(counter.to_owned(), tokens);
        self
    }

    /// Adds an absolute limit `metric <= value`, checked on every repetition.
    pub fn limit_at_most(mut self, metric: &str, value: f64) -> Self {
        self.gates.limits.push(Limit::at_most(metric, value));
        self
    }

    /// Adds an absolute limit `metric >= value`, checked on every repetition.
    pub fn limit_at_least(mut self, metric: &str, value: f64) -> Self {
        self.gates.limits.push(Limit::at_least(metric, value));
        self
    }

    /// Records a metric or counter without gating it.
    pub fn ungated(mut self, name: &str) -> Self {
        self.gates.ungated.insert(name.to_owned());
        self
    }
}
