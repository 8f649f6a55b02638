//! The `/metrics` exposition: the engine's counters under vLLM V1's metric names, in the
//! Prometheus text format 0.0.4 as vLLM's `prometheus_client` writes it.
//!
//! Every series carries `engine="0"` and `model_name="<served name>"`. Each counter `x` is
//! written as `x_total` with a companion gauge `x_created` holding the engine's start time in
//! unix seconds, and values are printed as `prometheus_client` prints floats (`1234.0`,
//! `1.7964135041040318e+09`).

use std::fmt::Write;
use std::time::UNIX_EPOCH;

use super::engine::{MockState, MockStats};

/// The `Content-Type` of the exposition.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

struct Family {
    /// Name without `_total`.
    name: &'static str,
    help: &'static str,
    kind: Kind,
    value: f64,
}

/// Renders the exposition of `state`'s current counters.
pub(crate) fn render(state: &MockState) -> String {
    let stats = state.stats();
    let created = state
        .started_at()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64());
    let labels = format!(
        "{{engine=\"0\",model_name=\"{}\"}}",
        escape_label_value(state.model_name())
    );

    let mut text = String::new();
    for family in families(&stats, state.kv_cache_usage(&stats)) {
        let Family {
            name,
            help,
            kind,
            value,
        } = family;
        match kind {
            Kind::Gauge => write_sample(&mut text, name, help, "gauge", &labels, value),
            Kind::Counter => {
                let total = format!("{name}_total");
                write_sample(&mut text, &total, help, "counter", &labels, value);
                let created_name = format!("{name}_created");
                write_sample(&mut text, &created_name, help, "gauge", &labels, created);
            }
        }
    }
    text
}

/// Lists the metric families in the order vLLM 0.32 writes them.
fn families(stats: &MockStats, kv_cache_usage: f64) -> [Family; 9] {
    let counter = |name, help, value: u64| Family {
        name,
        help,
        kind: Kind::Counter,
        value: value as f64,
    };
    [
        Family {
            name: "vllm:num_requests_running",
            help: "Number of requests past their first token that are still generating.",
            kind: Kind::Gauge,
            value: stats.running as f64,
        },
        Family {
            name: "vllm:num_requests_waiting",
            help: "Number of requests received whose first token is not yet due.",
            kind: Kind::Gauge,
            value: stats.waiting as f64,
        },
        Family {
            name: "vllm:kv_cache_usage_perc",
            help: "KV-cache usage: blocks held by running requests over the HBM capacity. \
                   1 means 100 percent usage.",
            kind: Kind::Gauge,
            value: kv_cache_usage,
        },
        counter(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
            stats.prefix_cache_queries,
        ),
        counter(
            "vllm:prefix_cache_hits",
            "Prefix cache hits, in terms of number of cached tokens.",
            stats.prefix_cache_hits,
        ),
        counter(
            "vllm:external_prefix_cache_queries",
            "External prefix cache queries, in terms of number of queried tokens.",
            stats.external_prefix_cache_queries,
        ),
        counter(
            "vllm:external_prefix_cache_hits",
            "External prefix cache hits, in terms of number of cached tokens.",
            stats.external_prefix_cache_hits,
        ),
        counter(
            "vllm:prompt_tokens",
            "Number of prefill tokens processed.",
            stats.prompt_tokens_total,
        ),
        counter(
            "vllm:generation_tokens",
            "Number of generation tokens processed.",
            stats.generation_tokens_total,
        ),
    ]
}

fn write_sample(text: &mut String, name: &str, help: &str, kind: &str, labels: &str, value: f64) {
    let value = format_value(value);
    // `fmt::Write` for `String` always returns `Ok`.
    let _ = write!(
        text,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{labels} {value}\n"
    );
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
    fn label_value_is_escaped() {
        assert_eq!(escape_label_value("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }
}
