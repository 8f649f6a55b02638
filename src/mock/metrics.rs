//! The `/metrics` exposition in the dialect of vLLM, SGLang or MindIE: the same engine state
//! under each engine's metric names, labels, sample order and number format, in the
//! Prometheus text format 0.0.4.
//!
//! - vLLM V1 (as 0.32 writes it with `prometheus_client`): `vllm:` names with the labels
//!   `engine="0"` and `model_name`. Every counter `x` is written as `x_total` with a gauge
//!   `x_created` containing the engine's start time, and histograms as buckets, `_count`, `_sum`
//!   and `_created`. Values are printed as `prometheus_client` prints floats (`1234.0`,
//!   `1.7964135041040318e+09`).
//! - SGLang (as its documented production metrics show them): `sglang:` names with a
//!   `model_name` label, no `_created` series, histograms as `_sum`, buckets and `_count`, and
//!   `prometheus_client`'s float format. The prefix cache appears as `sglang:cached_tokens_total`
//!   beside `sglang:prompt_tokens_total`, as SGLang builds from 2025 on export it.
//! - MindIE (as prometheus-cpp writes it): unprefixed names with a `model_name` label, `le`
//!   after it, histograms as `_count`, `_sum` and buckets, integers without a fraction
//!   (`le="1"`), and no token counters for the prefix cache, only `npu_prefix_cache_hit_rate`.
//!
//! NOTE: SGLang counts `prompt_tokens_total` and `cached_tokens_total` when a request finishes,
//! and MindIE's `npu_prefix_cache_hit_rate` is a ratio of blocks. The mock counts tokens when
//! the engine looks a prompt up, in every dialect, and its hit-rate gauges are the token hit
//! rate since the server started. The three dialects thus agree at every moment, while the
//! real engines agree only once every request has finished.

use std::fmt::Write;
use std::time::UNIX_EPOCH;

use super::engine::{MockState, MockStats};
use super::histogram::HistogramSnapshot;
use super::options::MetricsDialect;

/// Returns the `Content-Type` of `dialect`'s exposition.
pub(crate) fn content_type(dialect: MetricsDialect) -> &'static str {
    match dialect {
        MetricsDialect::Vllm | MetricsDialect::Sglang => "text/plain; version=0.0.4; charset=utf-8",
        // prometheus-cpp's TextSerializer.
        MetricsDialect::Mindie => "text/plain; version=0.0.4",
    }
}

/// Renders the exposition of `state`'s current counters in its configured dialect.
pub(crate) fn render(state: &MockState) -> String {
    let stats = state.stats();
    let kv_cache_usage = state.kv_cache_usage(&stats);
    let created = state
        .started_at()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64());
    let dialect = state.config().metrics_dialect;
    let model = escape_label_value(state.model_name());
    let labels = match dialect {
        MetricsDialect::Vllm => vec![("engine", "0".to_owned()), ("model_name", model)],
        MetricsDialect::Sglang | MetricsDialect::Mindie => vec![("model_name", model)],
    };
    let mut writer = Writer {
        text: String::new(),
        dialect,
        labels,
        created,
    };
    let histograms = state.histograms();
    let latencies = Latencies {
        ttft: histograms.ttft.snapshot(),
        inter_token: histograms.inter_token.snapshot(),
        e2e: histograms.e2e.snapshot(),
    };
    match dialect {
        MetricsDialect::Vllm => write_vllm(&mut writer, &stats, kv_cache_usage, &latencies),
        MetricsDialect::Sglang => write_sglang(&mut writer, &stats, kv_cache_usage, &latencies),
        MetricsDialect::Mindie => write_mindie(&mut writer, &stats, kv_cache_usage, &latencies),
    }
    writer.text
}

struct Latencies {
    ttft: HistogramSnapshot,
    inter_token: HistogramSnapshot,
    e2e: HistogramSnapshot,
}

/// Returns the token hit rate since the server started, 0 before the first query.
fn token_hit_rate(stats: &MockStats) -> f64 {
    if stats.prefix_cache_queries == 0 {
        return 0.0;
    }
    stats.prefix_cache_hits as f64 / stats.prefix_cache_queries as f64
}

/// Writes the families in the order vLLM 0.32 writes them.
fn write_vllm(writer: &mut Writer, stats: &MockStats, kv_cache_usage: f64, latencies: &Latencies) {
    writer.gauge(
        "vllm:num_requests_running",
        "Number of requests in model execution batches.",
        stats.running as f64,
    );
    writer.gauge(
        "vllm:num_requests_waiting",
        "Number of requests waiting to be processed.",
        stats.waiting as f64,
    );
    writer.gauge(
        "vllm:kv_cache_usage_perc",
        "KV-cache usage. 1 means 100 percent usage.",
        kv_cache_usage,
    );
    writer.counter(
        "vllm:prefix_cache_queries",
        "Prefix cache queries, in terms of number of queried tokens.",
        stats.prefix_cache_queries,
    );
    writer.counter(
        "vllm:prefix_cache_hits",
        "Prefix cache hits, in terms of number of cached tokens.",
        stats.prefix_cache_hits,
    );
    writer.counter(
        "vllm:external_prefix_cache_queries",
        "External prefix cache queries from KV connector cross-instance cache sharing, in \
         terms of number of queried tokens.",
        stats.external_prefix_cache_queries,
    );
    writer.counter(
        "vllm:external_prefix_cache_hits",
        "External prefix cache hits from KV connector cross-instance cache sharing, in terms \
         of number of cached tokens.",
        stats.external_prefix_cache_hits,
    );
    writer.counter(
        "vllm:prompt_tokens",
        "Number of prefill tokens processed.",
        stats.prompt_tokens_total,
    );
    writer.counter(
        "vllm:generation_tokens",
        "Number of generation tokens processed.",
        stats.generation_tokens_total,
    );
    writer.histogram(
        "vllm:time_to_first_token_seconds",
        "Histogram of time to first token in seconds.",
        &latencies.ttft,
    );
    writer.histogram(
        "vllm:inter_token_latency_seconds",
        "Histogram of inter-token latency in seconds.",
        &latencies.inter_token,
    );
    writer.histogram(
        "vllm:e2e_request_latency_seconds",
        "Histogram of e2e request latency in seconds.",
        &latencies.e2e,
    );
}

fn write_sglang(
    writer: &mut Writer,
    stats: &MockStats,
    kv_cache_usage: f64,
    latencies: &Latencies,
) {
    writer.counter(
        "sglang:prompt_tokens",
        "Number of prefill tokens processed.",
        stats.prefix_cache_queries,
    );
    writer.counter(
        "sglang:generation_tokens",
        "Number of generation tokens processed.",
        stats.generation_tokens_total,
    );
    writer.counter(
        "sglang:cached_tokens",
        "Number of cached prompt tokens.",
        stats.prefix_cache_hits,
    );
    writer.gauge("sglang:token_usage", "The token usage", kv_cache_usage);
    writer.gauge(
        "sglang:cache_hit_rate",
        "The cache hit rate",
        token_hit_rate(stats),
    );
    writer.histogram(
        "sglang:time_to_first_token_seconds",
        "Histogram of time to first token in seconds.",
        &latencies.ttft,
    );
    writer.histogram(
        "sglang:e2e_request_latency_seconds",
        "Histogram of End-to-end request latency in seconds",
        &latencies.e2e,
    );
    writer.histogram(
        "sglang:inter_token_latency_seconds",
        "Histogram of inter-token latency in seconds.",
        &latencies.inter_token,
    );
    writer.gauge(
        "sglang:num_running_reqs",
        "The number of running requests",
        stats.running as f64,
    );
    writer.gauge(
        "sglang:num_queue_reqs",
        "The number of requests in the waiting queue",
        stats.waiting as f64,
    );
}

fn write_mindie(
    writer: &mut Writer,
    stats: &MockStats,
    kv_cache_usage: f64,
    latencies: &Latencies,
) {
    writer.counter(
        "request_received",
        "Number of requests received so far.",
        stats.requests,
    );
    writer.gauge(
        "num_requests_running",
        "Number of requests currently running on NPU.",
        stats.running as f64,
    );
    writer.gauge(
        "num_requests_waiting",
        "Number of requests waiting to be processed.",
        stats.waiting as f64,
    );
    writer.counter(
        "prompt_tokens",
        "Number of prefill tokens processed.",
        stats.prompt_tokens_total,
    );
    writer.counter(
        "generation_tokens",
        "Number of generation tokens processed.",
        stats.generation_tokens_total,
    );
    writer.gauge(
        "npu_cache_usage_perc",
        "NPU KV-cache usage. 1 means 100 percent usage.",
        kv_cache_usage,
    );
    writer.gauge(
        "npu_prefix_cache_hit_rate",
        "NPU prefix cache block hit rate.",
        token_hit_rate(stats),
    );
    writer.histogram(
        "time_to_first_token_seconds",
        "Histogram of time to first token in seconds.",
        &latencies.ttft,
    );
    writer.histogram(
        "time_per_output_token_seconds",
        "Histogram of time per output token in seconds.",
        &latencies.inter_token,
    );
    writer.histogram(
        "e2e_request_latency_seconds",
        "Histogram of end to end request latency in seconds.",
        &latencies.e2e,
    );
}

/// Writes families in one dialect's style.
struct Writer {
    text: String,
    dialect: MetricsDialect,
    /// Label names and escaped values every series carries, in the order they are written.
    labels: Vec<(&'static str, String)>,
    /// The engine's start time in unix seconds, for vLLM's `_created` series.
    created: f64,
}

impl Writer {
    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, help, "gauge");
        self.sample(name, None, value);
    }

    /// Writes counter `name` (without `_total`) and, for vLLM, its `_created` gauge.
    fn counter(&mut self, name: &str, help: &str, value: u64) {
        let total = format!("{name}_total");
        self.header(&total, help, "counter");
        self.sample(&total, None, value as f64);
        if self.dialect == MetricsDialect::Vllm {
            self.gauge(&format!("{name}_created"), help, self.created);
        }
    }

    fn histogram(&mut self, name: &str, help: &str, snapshot: &HistogramSnapshot) {
        self.header(name, help, "histogram");
        let count = snapshot.count as f64;
        match self.dialect {
            MetricsDialect::Vllm => {
                self.buckets(name, snapshot);
                self.sample(&format!("{name}_count"), None, count);
                self.sample(&format!("{name}_sum"), None, snapshot.sum);
                self.gauge(&format!("{name}_created"), help, self.created);
            }
            MetricsDialect::Sglang => {
                self.sample(&format!("{name}_sum"), None, snapshot.sum);
                self.buckets(name, snapshot);
                self.sample(&format!("{name}_count"), None, count);
            }
            MetricsDialect::Mindie => {
                self.sample(&format!("{name}_count"), None, count);
                self.sample(&format!("{name}_sum"), None, snapshot.sum);
                self.buckets(name, snapshot);
            }
        }
    }

    fn buckets(&mut self, name: &str, snapshot: &HistogramSnapshot) {
        let bucket = format!("{name}_bucket");
        for &(bound, count) in &snapshot.buckets {
            let le = self.format(bound);
            self.sample(&bucket, Some(&le), count as f64);
        }
        self.sample(&bucket, Some("+Inf"), snapshot.count as f64);
    }

    fn header(&mut self, name: &str, help: &str, kind: &str) {
        // `fmt::Write` for `String` always returns `Ok`.
        let _ = write!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    /// Writes one sample; `le` is placed where the dialect's client library sorts it.
    fn sample(&mut self, name: &str, le: Option<&str>, value: f64) {
        let mut labels: Vec<(&str, &str)> = self
            .labels
            .iter()
            .map(|(label, value)| (*label, value.as_str()))
            .collect();
        if let Some(le) = le {
            labels.push(("le", le));
            // prometheus_client sorts labels by name; prometheus-cpp writes `le` last.
            if self.dialect != MetricsDialect::Mindie {
                labels.sort_by_key(|(label, _)| *label);
            }
        }
        let value = self.format(value);
        let _ = write!(self.text, "{name}{{");
        for (index, (label, label_value)) in labels.iter().enumerate() {
            let separator = if index == 0 { "" } else { "," };
            let _ = write!(self.text, "{separator}{label}=\"{label_value}\"");
        }
        let _ = writeln!(self.text, "}} {value}");
    }

    fn format(&self, value: f64) -> String {
        match self.dialect {
            MetricsDialect::Vllm | MetricsDialect::Sglang => format_value(value),
            MetricsDialect::Mindie => format_cpp_value(value),
        }
    }
}

/// Formats a sample value close to prometheus-cpp: integers without a fraction (`3188`, `1`),
/// other finite values in their shortest round-trip form. prometheus-cpp prints 16
/// significant digits, so its fractions can differ from these in the last digits.
fn format_cpp_value(value: f64) -> String {
    if value.is_nan() {
        return "Nan".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    if value.fract() == 0.0 && value.abs() < 1e15 {
        return format!("{}", value as i64);
    }
    format!("{value}")
}

/// Escapes a label value as the text format requires: backslash, double quote and newline.
fn escape_label_value(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// Formats a sample value as `prometheus_client`'s `floatToGoString` does: Python's `repr` of
/// the float, except that a positive value with more than six digits before the point switches
/// to an exponent (`1234567.0` becomes `1.234567e+06`, `2.5e10` becomes `2.5e+010`).
fn format_value(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    let repr = python_float_repr(value);
    match repr.find('.') {
        Some(dot) if value > 0.0 && dot > 6 => {
            let mantissa = format!("{}.{}{}", &repr[..1], &repr[1..dot], &repr[dot + 1..]);
            let mantissa = mantissa.trim_end_matches(['0', '.']);
            format!("{mantissa}e+0{}", dot - 1)
        }
        _ => repr,
    }
}

/// Formats a finite float as Python's `repr` does. Rust's `Debug` picks the same shortest
/// round-trip digits and switches to an exponent at the same bounds, below 1e-4 and from 1e16
/// on. Only the exponent is written differently: `1e-5` where Python writes `1e-05`.
fn python_float_repr(value: f64) -> String {
    let debug = format!("{value:?}");
    let Some((mantissa, exponent)) = debug.split_once('e') else {
        return debug;
    };
    let (sign, digits) = match exponent.strip_prefix('-') {
        Some(digits) => ('-', digits),
        None => ('+', exponent),
    };
    format!("{mantissa}e{sign}{digits:0>2}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_prints_integers_with_point_zero() {
        assert_eq!(format_value(0.0), "0.0");
        assert_eq!(format_value(9167.0), "9167.0");
    }

    #[test]
    fn value_switches_to_exponent_above_six_digits() {
        assert_eq!(format_value(999_999.0), "999999.0");
        assert_eq!(format_value(1_000_000.0), "1e+06");
        assert_eq!(format_value(1_234_567.0), "1.234567e+06");
    }

    #[test]
    fn value_prints_timestamps_like_vllm() {
        assert_eq!(
            format_value(1_796_413_504.104_031_8),
            "1.7964135041040318e+09"
        );
        assert_eq!(format_value(25_000_000_000.0), "2.5e+010");
    }

    #[test]
    fn value_prints_small_fractions_like_python() {
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(0.0001), "0.0001");
        assert_eq!(format_value(1.0 / 1_048_576.0), "9.5367431640625e-07");
        assert_eq!(format_value(0.00009), "9e-05");
    }

    #[test]
    fn value_prints_huge_values_like_python() {
        assert_eq!(
            format_value(9_999_999_999_999_998.0),
            "9.999999999999998e+015"
        );
        assert_eq!(format_value(1e16), "1e+16");
    }

    #[test]
    fn value_prints_special_floats() {
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
    }

    #[test]
    fn cpp_value_drops_integer_fraction() {
        assert_eq!(format_cpp_value(3188.0), "3188");
        assert_eq!(format_cpp_value(1.0), "1");
        assert_eq!(format_cpp_value(0.001), "0.001");
        assert_eq!(format_cpp_value(2.5), "2.5");
    }

    #[test]
    fn label_value_is_escaped() {
        assert_eq!(escape_label_value("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }
}
