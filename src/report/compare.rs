//! Side-by-side comparison of two runs: `clawperf compare A.json B.json`.
//!
//! Method. For TTFT, TPOT and E2E latency, the per-turn values of each run's successful turns
//! are compared the way the regression gate compares per-repetition values. The row shows the
//! ratio of their geometric means and a one-sided Mann–Whitney U test in the metric's bad
//! direction (B slower than A), see [`crate::significance`]. The test assumes independent samples, but the
//! turns of one user share a cache state and a server, so per-turn values within one run are
//! not independent and the p-value is only indicative. Where either run has fewer than
//! [`MIN_SAMPLES`] values the row shows the delta without a p-value. Other rows (percentiles,
//! throughput, hit rate, counts) compare the summaries: absolute delta and percent change,
//! with no test.

use crate::result::{RunResult, Summary, TurnRecord};
use crate::significance::{Alternative, geometric_mean, mann_whitney_u};
use crate::stats::LatencyStats;

/// A metric read from each turn, by name.
type TurnMetric = (&'static str, fn(&TurnRecord) -> Option<f64>);
/// A latency statistic read from a summary, by name.
type SummaryLatency = (&'static str, fn(&Summary) -> Option<LatencyStats>);
/// A percentile picked from latency statistics, by name.
type Percentile = (&'static str, fn(&LatencyStats) -> f64);

/// Significance level below which a per-turn row is called worse or better.
pub const SIGNIFICANCE_LEVEL: f64 = 0.05;

/// Values per side below which no p-value is computed: with 3 per side the smallest
/// one-sided p-value of the exact test is 1/20 = 0.05.
pub const MIN_SAMPLES: usize = 3;

/// The direction of change that makes a metric a regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadDirection {
    /// Larger is worse (latencies, failures).
    Higher,
    /// Smaller is worse (throughput, hit rate).
    Lower,
    /// Neither: a count that describes the workload.
    Neutral,
}

/// One metric of both runs.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    pub name: String,
    pub unit: &'static str,
    pub a: Option<f64>,
    pub b: Option<f64>,
    pub bad_direction: BadDirection,
    /// Sample sizes of a per-turn comparison, `None` for summary rows.
    pub samples: Option<(usize, usize)>,
    /// One-sided Mann–Whitney p-value of "B is worse than A", when both sides have enough
    /// samples.
    pub p_value: Option<f64>,
    /// The same test in the other direction: "B is better than A".
    pub p_value_better: Option<f64>,
}

impl MetricRow {
    /// B − A, when both are known.
    pub fn delta(&self) -> Option<f64> {
        Some(self.b? - self.a?)
    }

    /// (B − A) / A in percent, when both are known and A is not 0.
    pub fn percent_change(&self) -> Option<f64> {
        let (a, b) = (self.a?, self.b?);
        (a != 0.0).then(|| (b - a) / a.abs() * 100.0)
    }

    /// Returns "worse" or "better" for the direction of the change, "same" for no change, and
    /// "n.s." for a per-turn row whose test is not significant in either direction. Summary rows
    /// have no test, so their word follows the sign of the delta alone.
    pub fn direction_word(&self) -> &'static str {
        if let (Some(worse), Some(better)) = (self.p_value, self.p_value_better) {
            return if worse < SIGNIFICANCE_LEVEL {
                "worse"
            } else if better < SIGNIFICANCE_LEVEL {
                "better"
            } else {
                "n.s."
            };
        }
        let Some(delta) = self.delta() else {
            return "";
        };
        let larger_is_worse = match self.bad_direction {
            BadDirection::Neutral => return if delta == 0.0 { "same" } else { "" },
            BadDirection::Higher => true,
            BadDirection::Lower => false,
        };
        if delta == 0.0 {
            "same"
        } else if (delta > 0.0) == larger_is_worse {
            "worse"
        } else {
            "better"
        }
    }
}

/// The comparison of two runs, A (baseline) and B (candidate).
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub label_a: String,
    pub label_b: String,
    pub rows: Vec<MetricRow>,
}

/// Compares run `b` with run `a`.
pub fn compare_runs(a: &RunResult, b: &RunResult, label_a: &str, label_b: &str) -> Comparison {
    let mut rows = Vec::new();
    let per_turn: [TurnMetric; 3] = [
        ("TTFT geometric mean", |turn| turn.ttft_ms),
        ("TPOT geometric mean", |turn| turn.tpot_ms),
        ("E2E geometric mean", |turn| turn.e2e_latency_ms),
    ];
    for (name, read) in per_turn {
        rows.push(per_turn_row(
            name,
            &turn_values(a, read),
            &turn_values(b, read),
        ));
    }

    let latency: [SummaryLatency; 4] = [
        ("TTFT", |summary| summary.ttft),
        ("TPOT", |summary| summary.tpot),
        ("ITL", |summary| summary.itl),
        ("E2E", |summary| summary.e2e_latency),
    ];
    for (name, read) in latency {
        let (stats_a, stats_b) = (read(&a.summary), read(&b.summary));
        let percentiles: [Percentile; 2] = [("P50", |s| s.p50), ("P99", |s| s.p99)];
        for (percentile, pick) in percentiles {
            rows.push(summary_row(
                &format!("{name} {percentile}"),
                "ms",
                stats_a.as_ref().map(pick),
                stats_b.as_ref().map(pick),
                BadDirection::Higher,
            ));
        }
    }

    let (sa, sb) = (&a.summary, &b.summary);
    let percent = |rate: Option<f64>| rate.map(|rate| rate * 100.0);
    rows.extend([
        summary_row(
            "output throughput",
            "tok/s",
            Some(sa.output_throughput_tok_s),
            Some(sb.output_throughput_tok_s),
            BadDirection::Lower,
        ),
        summary_row(
            "request throughput",
            "req/s",
            Some(sa.request_throughput_per_s),
            Some(sb.request_throughput_per_s),
            BadDirection::Lower,
        ),
        summary_row(
            "prefix-cache hit rate (HBM)",
            "%",
            percent(sa.prefix_cache_token_hit_rate),
            percent(sb.prefix_cache_token_hit_rate),
            BadDirection::Lower,
        ),
        summary_row(
            "prefix-cache hit rate (external)",
            "%",
            percent(sa.external_prefix_cache_token_hit_rate),
            percent(sb.external_prefix_cache_token_hit_rate),
            BadDirection::Lower,
        ),
        count_row(
            "successful turns",
            sa.successful_turns,
            sb.successful_turns,
            BadDirection::Lower,
        ),
        count_row(
            "failed turns",
            sa.failed_turns,
            sb.failed_turns,
            BadDirection::Higher,
        ),
        count_row(
            "input tokens",
            sa.total_input_tokens,
            sb.total_input_tokens,
            BadDirection::Neutral,
        ),
        count_row(
            "output tokens",
            sa.total_output_tokens,
            sb.total_output_tokens,
            BadDirection::Neutral,
        ),
        count_row(
            "compactions",
            sa.total_compactions,
            sb.total_compactions,
            BadDirection::Neutral,
        ),
        summary_row(
            "duration",
            "s",
            Some(sa.duration_s),
            Some(sb.duration_s),
            BadDirection::Neutral,
        ),
    ]);

    Comparison {
        label_a: label_a.to_owned(),
        label_b: label_b.to_owned(),
        rows,
    }
}

fn turn_values(result: &RunResult, read: fn(&TurnRecord) -> Option<f64>) -> Vec<f64> {
    result
        .users
        .iter()
        .flat_map(|user| &user.turns)
        .filter(|turn| turn.success)
        .filter_map(read)
        .collect()
}

fn per_turn_row(name: &str, a: &[f64], b: &[f64]) -> MetricRow {
    let enough = a.len() >= MIN_SAMPLES && b.len() >= MIN_SAMPLES;
    let test = |alternative| {
        enough
            .then(|| mann_whitney_u(a, b, alternative).map(|test| test.p_value))
            .flatten()
    };
    MetricRow {
        name: name.to_owned(),
        unit: "ms",
        a: geometric_mean(a),
        b: geometric_mean(b),
        bad_direction: BadDirection::Higher,
        samples: Some((a.len(), b.len())),
        p_value: test(Alternative::Greater),
        p_value_better: test(Alternative::Less),
    }
}

fn summary_row(
    name: &str,
    unit: &'static str,
    a: Option<f64>,
    b: Option<f64>,
    bad_direction: BadDirection,
) -> MetricRow {
    MetricRow {
        name: name.to_owned(),
        unit,
        a,
        b,
        bad_direction,
        samples: None,
        p_value: None,
        p_value_better: None,
    }
}

fn count_row(name: &str, a: u64, b: u64, bad_direction: BadDirection) -> MetricRow {
    summary_row(name, "", Some(a as f64), Some(b as f64), bad_direction)
}
