//! What the gate checks: significance level, tolerances, limits, and each metric's direction.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Significance level of the one-sided test.
pub const DEFAULT_ALPHA: f64 = 0.05;
/// Relative tolerance of latency metrics: a regression must exceed 15 % of the baseline's
/// geometric mean.
pub const DEFAULT_LATENCY_TOLERANCE: f64 = 0.15;
/// Relative tolerance of throughput metrics.
pub const DEFAULT_THROUGHPUT_TOLERANCE: f64 = 0.15;

/// Which way a latency or throughput metric gets worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricDirection {
    /// Latencies: higher is worse.
    LowerIsBetter,
    /// Throughput: lower is worse.
    HigherIsBetter,
}

/// Which change of a counter is a regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CounterDirection {
    /// Any change is a regression: the workload or the server's accounting changed.
    Exact,
    /// More is a regression, fewer an improvement (errors).
    LowerIsBetter,
    /// Fewer is a regression, more an improvement (prefix-cache hits).
    HigherIsBetter,
}

/// Returns the direction of a latency or throughput metric: names starting with
/// `throughput` are higher-is-better, every other metric is a latency.
pub fn metric_direction(name: &str) -> MetricDirection {
    if name.starts_with("throughput") {
        MetricDirection::HigherIsBetter
    } else {
        MetricDirection::LowerIsBetter
    }
}

/// Returns the direction of a counter.
pub fn counter_direction(name: &str) -> CounterDirection {
    match name {
        "errors" | "context_overflows" => CounterDirection::LowerIsBetter,
        "prefix_cache_hit_tokens" | "external_prefix_cache_hit_tokens" => {
            CounterDirection::HigherIsBetter
        }
        _ => CounterDirection::Exact,
    }
}

/// Which side of a [`Limit`] passes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitBound {
    AtMost(f64),
    AtLeast(f64),
}

/// An absolute limit on one metric, checked on every repetition: `ttft.p99 <= 2000` (ms) or
/// `error_rate <= 0`. The metric is a latency or throughput name, a counter, or `error_rate`
/// (errors divided by requests).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limit {
    pub metric: String,
    pub bound: LimitBound,
}

impl Limit {
    pub fn at_most(metric: impl Into<String>, value: f64) -> Self {
        Self {
            metric: metric.into(),
            bound: LimitBound::AtMost(value),
        }
    }

    pub fn at_least(metric: impl Into<String>, value: f64) -> Self {
        Self {
            metric: metric.into(),
            bound: LimitBound::AtLeast(value),
        }
    }

    /// Returns whether `value` is within the limit.
    pub fn admits(&self, value: f64) -> bool {
        match self.bound {
            LimitBound::AtMost(max) => value <= max,
            LimitBound::AtLeast(min) => value >= min,
        }
    }

    /// Returns the limit as text, such as `ttft.p99 <= 2000`.
    pub fn describe(&self) -> String {
        match self.bound {
            LimitBound::AtMost(max) => format!("{} <= {max}", self.metric),
            LimitBound::AtLeast(min) => format!("{} >= {min}", self.metric),
        }
    }
}

/// The gates of a scenario. Every latency and throughput metric and every counter that the
/// baseline and the new run both contain is compared, unless [`ungated`](Self::ungated)
/// names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gates {
    /// Significance level of the one-sided test.
    pub alpha: f64,
    /// Relative tolerance of latency metrics, as a fraction (0.15 is 15 %).
    pub latency_tolerance: f64,
    /// Relative tolerance of throughput metrics, as a fraction.
    pub throughput_tolerance: f64,
    /// Relative tolerances overriding the two above. A key names a metric (`itl.p99`), every
    /// statistic of a series (`itl.*`) or one statistic of every series (`*.p99`); the most
    /// specific key wins, in that order.
    pub tolerances: BTreeMap<String, f64>,
    /// Absolute tolerances of counters; a counter not named here compares exactly.
    pub counter_tolerances: BTreeMap<String, u64>,
    pub limits: Vec<Limit>,
    /// Metrics and counters that are recorded but not compared.
    pub ungated: BTreeSet<String>,
}

impl Default for Gates {
    fn default() -> Self {
        Self {
            alpha: DEFAULT_ALPHA,
            latency_tolerance: DEFAULT_LATENCY_TOLERANCE,
            throughput_tolerance: DEFAULT_THROUGHPUT_TOLERANCE,
            tolerances: BTreeMap::new(),
            counter_tolerances: BTreeMap::new(),
            limits: vec![Limit::at_most("error_rate", 0.0)],
            ungated: BTreeSet::new(),
        }
    }
}

impl Gates {
    /// Returns the relative tolerance of a latency or throughput metric.
    pub fn tolerance(&self, metric: &str) -> f64 {
        let mut keys = vec![metric.to_owned()];
        if let Some((series, statistic)) = metric.split_once('.') {
            keys.push(format!("{series}.*"));
            keys.push(format!("*.{statistic}"));
        }
        if let Some(tolerance) = keys.iter().find_map(|key| self.tolerances.get(key)) {
            return *tolerance;
        }
        match metric_direction(metric) {
            MetricDirection::LowerIsBetter => self.latency_tolerance,
            MetricDirection::HigherIsBetter => self.throughput_tolerance,
        }
    }

    /// Returns the absolute tolerance of a counter.
    pub fn counter_tolerance(&self, counter: &str) -> u64 {
        self.counter_tolerances.get(counter).copied().unwrap_or(0)
    }

    pub fn is_gated(&self, name: &str) -> bool {
        !self.ungated.contains(name)
    }
}

/// What one repetition measured: latency and throughput values (milliseconds and tokens per
/// second) and integer counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RepetitionSummary {
    pub metrics: BTreeMap<String, f64>,
    pub counters: BTreeMap<String, u64>,
}

impl RepetitionSummary {
    /// Returns the value a limit checks: a metric, a counter, or `error_rate` computed as
    /// `errors / requests` (0 when nothing was sent).
    pub fn limit_value(&self, metric: &str) -> Option<f64> {
        if let Some(value) = self.metrics.get(metric) {
            return Some(*value);
        }
        if let Some(value) = self.counters.get(metric) {
            return Some(*value as f64);
        }
        if metric == "error_rate" {
            let errors = *self.counters.get("errors")?;
            let requests = *self.counters.get("requests")?;
            return Some(if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            });
        }
        None
    }
}
