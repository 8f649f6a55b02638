//! Latency statistics: an HdrHistogram per metric and its summary.
//!
//! Method: values are recorded in microseconds into an HdrHistogram with 3 significant digits,
//! so every recorded value is kept within 0.1 % of its true value. Percentiles are HdrHistogram's
//! `value_at_quantile`: the highest value equivalent (within that precision) to the smallest
//! recorded value at or above the requested fraction of samples, clamped to the exact minimum
//! and maximum. `avg`, `min` and `max` are exact, from a running sum and extremes kept beside
//! the histogram. Summaries are reported in
//! milliseconds. A metric with no samples has no summary (never zeros).

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

const SIGNIFICANT_DIGITS: u8 = 3;

/// A latency histogram with microsecond resolution.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    histogram: Histogram<u64>,
    sum_us: u128,
    min_us: u64,
    max_us: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> Self {
        Self {
            histogram: Histogram::new(SIGNIFICANT_DIGITS)
                .expect("3 significant digits is a valid precision"),
            sum_us: 0,
            min_us: u64::MAX,
            max_us: 0,
        }
    }

    /// Records one latency. The histogram grows to fit any value, so nothing is clipped.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        if self.histogram.record(micros).is_err() {
            // Only a value beyond the histogram's maximum trackable value (about 2^63 µs)
            // fails to record after auto-resizing; clamp it rather than lose the sample.
            self.histogram.saturating_record(micros);
        }
        self.sum_us += u128::from(micros);
        self.min_us = self.min_us.min(micros);
        self.max_us = self.max_us.max(micros);
    }

    pub fn add(&mut self, other: &LatencyHistogram) {
        self.histogram
            .add(&other.histogram)
            .expect("auto-resizing histograms always merge");
        self.sum_us += other.sum_us;
        self.min_us = self.min_us.min(other.min_us);
        self.max_us = self.max_us.max(other.max_us);
    }

    pub fn len(&self) -> u64 {
        self.histogram.len()
    }

    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty()
    }

    /// Returns the underlying histogram, in microseconds.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.histogram
    }

    /// Returns the summary in milliseconds, or `None` when nothing was recorded.
    pub fn summary(&self) -> Option<LatencyStats> {
        if self.is_empty() {
            return None;
        }
        let count = self.histogram.len();
        // A bucket's highest equivalent value can lie above the exact maximum (or below the
        // minimum), so percentiles are clamped to the exact range.
        let at = |quantile: f64| {
            let micros = self.histogram.value_at_quantile(quantile);
            micros_to_ms(micros.clamp(self.min_us, self.max_us))
        };
        Some(LatencyStats {
            count,
            avg: self.sum_us as f64 / count as f64 / 1000.0,
            min: micros_to_ms(self.min_us),
            max: micros_to_ms(self.max_us),
            p50: at(0.50),
            p90: at(0.90),
            p95: at(0.95),
            p99: at(0.99),
        })
    }
}

fn micros_to_ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// Summary of one latency metric, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    pub count: u64,
    pub avg: f64,
    pub min: f64,
    pub max: f64,
    #[serde(rename = "P50")]
    pub p50: f64,
    #[serde(rename = "P90")]
    pub p90: f64,
    #[serde(rename = "P95")]
    pub p95: f64,
    #[serde(rename = "P99")]
    pub p99: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_histogram_has_no_summary() {
        assert_eq!(LatencyHistogram::new().summary(), None);
    }

    #[test]
    fn summary_of_one_to_hundred_ms() {
        let mut histogram = LatencyHistogram::new();
        for ms in 1..=100 {
            histogram.record(Duration::from_millis(ms));
        }
        let stats = histogram.summary().unwrap();
        assert_eq!(stats.count, 100);
        assert_eq!(stats.avg, 50.5);
        assert_eq!(stats.min, 1.0);
        assert_eq!(stats.max, 100.0);
        // 3 significant digits: 50 ms is recorded within 50 µs.
        assert!((stats.p50 - 50.0).abs() <= 0.05, "p50 {}", stats.p50);
        assert!((stats.p99 - 99.0).abs() <= 0.1, "p99 {}", stats.p99);
    }

    #[test]
    fn percentiles_never_exceed_the_exact_max() {
        let mut histogram = LatencyHistogram::new();
        histogram.record(Duration::from_micros(692_096));
        let stats = histogram.summary().unwrap();
        assert_eq!(stats.p99, stats.max);
        assert_eq!(stats.p50, stats.min);
    }

    #[test]
    fn add_merges_extremes_and_sums() {
        let mut left = LatencyHistogram::new();
        left.record(Duration::from_millis(10));
        let mut right = LatencyHistogram::new();
        right.record(Duration::from_millis(30));
        left.add(&right);
        let stats = left.summary().unwrap();
        assert_eq!(stats.count, 2);
        assert_eq!(stats.avg, 20.0);
        assert_eq!(stats.min, 10.0);
        assert_eq!(stats.max, 30.0);
    }
}
