//! The plain-text summary printed at the end of a run.

use std::fmt::Write as _;

use crate::result::{RunResult, Summary};
use crate::stats::LatencyStats;

/// Renders the run summary and a per-user table as aligned plain text.
pub fn render_summary(result: &RunResult) -> String {
    let summary = &result.summary;
    let config = &result.config;
    let mut out = String::new();

    let _ = writeln!(
        out,
        "clawperf {} — endpoint {}, model {}",
        result.clawperf_version, config.endpoint, config.model
    );
    if config.token_counts_approximate {
        let _ = writeln!(
            out,
            "token counts use the built-in tokenizer and only approximate the model's"
        );
    }
    let _ = writeln!(out);
    write_totals(&mut out, summary);
    let _ = writeln!(out);
    write_latency_table(&mut out, summary);
    let _ = writeln!(out);
    write_cache(&mut out, summary, config.metrics_endpoint.is_some());
    let _ = writeln!(out);
    write_users(&mut out, result);
    out
}

fn write_totals(out: &mut String, summary: &Summary) {
    let rows = [
        ("Duration", format!("{:.2} s", summary.duration_s)),
        ("Users", summary.total_users.to_string()),
        (
            "Turns",
            format!(
                "{} ({} ok, {} failed)",
                summary.total_turns, summary.successful_turns, summary.failed_turns
            ),
        ),
        ("Input tokens", summary.total_input_tokens.to_string()),
        ("Output tokens", summary.total_output_tokens.to_string()),
        (
            "Output throughput",
            format!("{:.1} tok/s", summary.output_throughput_tok_s),
        ),
        (
            "Request throughput",
            format!("{:.3} req/s", summary.request_throughput_per_s),
        ),
        ("Compactions", summary.total_compactions.to_string()),
        ("Context overflows", summary.context_overflows.to_string()),
    ];
    for (label, value) in rows {
        let _ = writeln!(out, "{label:<22}{value}");
    }
    if summary.interrupted {
        let _ = writeln!(
            out,
            "{:<22}yes; {} turns in flight were aborted without a record",
            "Interrupted", summary.aborted_turns
        );
    }
    for (class, count) in &summary.errors_by_class {
        // A long class name still gets a space before its count.
        let _ = writeln!(out, "{:<21} {count}", format!("Failed: {class}"));
    }
}

fn write_latency_table(out: &mut String, summary: &Summary) {
    let _ = writeln!(
        out,
        "{:<22}{:>8}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
        "Latency (ms)", "count", "avg", "min", "P50", "P90", "P95", "P99", "max"
    );
    let rows = [
        ("TTFT", summary.ttft),
        ("Time to content", summary.time_to_first_content),
        ("TPOT", summary.tpot),
        ("ITL", summary.itl),
        ("E2E latency", summary.e2e_latency),
    ];
    for (label, stats) in rows {
        let _ = writeln!(out, "{}", latency_row(label, stats.as_ref()));
    }
}

fn latency_row(label: &str, stats: Option<&LatencyStats>) -> String {
    match stats {
        Some(s) => format!(
            "{label:<22}{:>8}{:>10.2}{:>10.2}{:>10.2}{:>10.2}{:>10.2}{:>10.2}{:>10.2}",
            s.count, s.avg, s.min, s.p50, s.p90, s.p95, s.p99, s.max
        ),
        None => format!("{label:<22}{:>8}  (no samples)", 0),
    }
}

/// Writes the prefix-cache hit rates. `scraped` is whether `--metrics-endpoint` was given, so
/// that the line for a missing rate can name the fix.
fn write_cache(out: &mut String, summary: &Summary, scraped: bool) {
    let missing = if scraped {
        "not reported by the server's /metrics"
    } else {
        "not reported (pass --metrics-endpoint to read the server's counters)"
    };
    let rate =
        |rate: Option<f64>, hits: Option<f64>, queries: Option<f64>| match (rate, hits, queries) {
            (Some(rate), Some(hits), Some(queries)) => {
                format!("{:.2} % ({hits:.0} of {queries:.0} tokens)", rate * 100.0)
            }
            _ => missing.to_owned(),
        };
    let _ = writeln!(
        out,
        "{:<22}{}",
        "Prefix cache (HBM)",
        rate(
            summary.prefix_cache_token_hit_rate,
            summary.prefix_cache_hit_tokens_delta,
            summary.prefix_cache_query_tokens_delta
        )
    );
    let _ = writeln!(
        out,
        "{:<22}{}",
        "Prefix cache (ext.)",
        rate(
            summary.external_prefix_cache_token_hit_rate,
            summary.external_prefix_cache_hit_tokens_delta,
            summary.external_prefix_cache_query_tokens_delta
        )
    );
    if summary.metrics_scrape_errors > 0 {
        let _ = writeln!(
            out,
            "{:<22}{}",
            "Metrics scrape errors", summary.metrics_scrape_errors
        );
    }
}

fn write_users(out: &mut String, result: &RunResult) {
    let _ = writeln!(
        out,
        "{:>5}{:>7}{:>8}{:>12}{:>12}{:>12}{:>12}{:>12}  stop",
        "user", "turns", "errors", "out tokens", "tok/s", "TTFT P50", "TPOT P50", "compactions"
    );
    for user in &result.users {
        let aggregate = &user.aggregate;
        let p50 = |stats: Option<LatencyStats>| {
            stats.map_or_else(|| "-".to_owned(), |s| format!("{:.2}", s.p50))
        };
        let _ = writeln!(
            out,
            "{:>5}{:>7}{:>8}{:>12}{:>12.1}{:>12}{:>12}{:>12}  {}",
            user.user_id,
            aggregate.total_turns,
            aggregate.error_count,
            aggregate.total_output_tokens,
            aggregate.throughput_tok_s,
            p50(aggregate.ttft),
            p50(aggregate.tpot),
            aggregate.compaction_count,
            aggregate.stop_reason
        );
    }
}
