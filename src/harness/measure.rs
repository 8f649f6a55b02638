//! Turns what a repetition measured (a run's result, or an `async` scenario's
//! [`Measurements`]) into the values the gate compares and the histograms a baseline keeps.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::gate::{Gates, RepetitionSummary};
use crate::result::RunResult;
use crate::stats::{LatencyHistogram, LatencyStats};

use super::custom::Measurements;

/// One repetition's gated values and its latency histograms (microseconds).
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub summary: RepetitionSummary,
    pub histograms: BTreeMap<String, LatencyHistogram>,
}

impl Measured {
    /// Returns the failed requests of the repetition (the `errors` counter).
    pub fn errors(&self) -> u64 {
        self.summary.counters.get("errors").copied().unwrap_or(0)
    }
}

fn insert_stats(metrics: &mut BTreeMap<String, f64>, name: &str, stats: Option<&LatencyStats>) {
    let Some(stats) = stats else {
        return;
    };
    for (statistic, value) in [
        ("avg", stats.avg),
        ("p50", stats.p50),
        ("p90", stats.p90),
        ("p99", stats.p99),
    ] {
        metrics.insert(format!("{name}.{statistic}"), value);
    }
}

/// Returns the gated values of a run: `ttft`, `tpot`, `itl` and `e2e` at avg/p50/p90/p99
/// (ms), `throughput` (output tokens per second), and the counters.
///
/// The histograms of TTFT, TPOT and E2E are rebuilt from the successful turns' values,
/// which the result keeps to the microsecond.
// NOTE: the result JSON keeps only each turn's ITL count, mean and max, so there is no ITL
// histogram; ITL is still gated through its summary statistics.
pub fn summarize_run(result: &RunResult) -> Measured {
    let summary = &result.summary;
    let mut metrics = BTreeMap::new();
    insert_stats(&mut metrics, "ttft", summary.ttft.as_ref());
    insert_stats(&mut metrics, "tpot", summary.tpot.as_ref());
    insert_stats(&mut metrics, "itl", summary.itl.as_ref());
    insert_stats(&mut metrics, "e2e", summary.e2e_latency.as_ref());
    if summary.output_throughput_tok_s > 0.0 {
        metrics.insert("throughput".to_owned(), summary.output_throughput_tok_s);
    }

    let errors = summary.failed_turns - summary.context_overflows;
    let mut counters = BTreeMap::from([
        (
            "requests".to_owned(),
            summary.total_turns - summary.context_overflows,
        ),
        ("errors".to_owned(), errors),
        ("input_tokens".to_owned(), summary.total_input_tokens),
        ("output_tokens".to_owned(), summary.total_output_tokens),
        ("compactions".to_owned(), summary.total_compactions),
        ("context_overflows".to_owned(), summary.context_overflows),
    ]);
    for (name, delta) in [
        (
            "prefix_cache_hit_tokens",
            summary.prefix_cache_hit_tokens_delta,
        ),
        (
            "prefix_cache_query_tokens",
            summary.prefix_cache_query_tokens_delta,
        ),
        (
            "external_prefix_cache_hit_tokens",
            summary.external_prefix_cache_hit_tokens_delta,
        ),
        (
            "external_prefix_cache_query_tokens",
            summary.external_prefix_cache_query_tokens_delta,
        ),
    ] {
        // Counter deltas are whole tokens; a negative or fractional one would mean a server
        // restart, which the poller already reports as absent.
        if let Some(delta) = delta.filter(|delta| *delta >= 0.0) {
            counters.insert(name.to_owned(), delta.round() as u64);
        }
    }

    let mut histograms: BTreeMap<String, LatencyHistogram> = BTreeMap::new();
    for turn in result.users.iter().flat_map(|user| &user.turns) {
        for (name, value) in [
            ("ttft", turn.ttft_ms),
            ("tpot", turn.tpot_ms),
            ("e2e", turn.e2e_latency_ms),
        ] {
            if let Some(ms) = value.filter(|ms| ms.is_finite() && *ms >= 0.0) {
                histograms
                    .entry(name.to_owned())
                    .or_default()
                    .record(Duration::from_secs_f64(ms / 1000.0));
            }
        }
    }

    Measured {
        summary: RepetitionSummary { metrics, counters },
        histograms,
    }
}

/// Returns the gated values of an `async` scenario's repetition, and its gates.
pub fn summarize_measurements(measurements: Measurements) -> (Measured, Gates) {
    let mut metrics = measurements.values;
    let mut histograms = measurements.run_histograms;
    for (name, histogram) in measurements.latencies {
        insert_stats(&mut metrics, &name, histogram.summary().as_ref());
        histograms.insert(name, histogram);
    }
    let measured = Measured {
        summary: RepetitionSummary {
            metrics,
            counters: measurements.counters,
        },
        histograms,
    };
    (measured, measurements.gates)
}
