//! The verdict of a report: a few findings a reader checks first, each one sentence.
//!
//! The findings describe one run; they are not a gate. Gating against a baseline is the job of
//! the regression harness and of `clawperf compare`.

use crate::result::RunResult;

/// Median TTFT of the last turn index above this multiple of the first one's is reported as
/// TTFT growing with the context.
const TTFT_GROWTH_FACTOR: f64 = 1.5;

/// Returns the findings about `result`, most important first.
pub fn findings(result: &RunResult) -> Vec<String> {
    let summary = &result.summary;
    let mut findings = Vec::new();

    if summary.interrupted {
        findings.push(format!(
            "The run was interrupted: it holds only the {} turns that finished, and {} turns in \
             flight were aborted without a record.",
            summary.total_turns, summary.aborted_turns
        ));
    }
    if summary.failed_turns == 0 {
        findings.push(format!(
            "All {} finished turns of {} users succeeded.",
            summary.total_turns, summary.total_users
        ));
    } else {
        let classes: Vec<String> = summary
            .errors_by_class
            .iter()
            .map(|(class, count)| format!("{count} {class}"))
            .collect();
        findings.push(format!(
            "{} of {} turns failed ({}).",
            summary.failed_turns,
            summary.total_turns,
            classes.join(", ")
        ));
    }

    match summary.prefix_cache_token_hit_rate {
        Some(rate) => findings.push(format!(
            "The server's prefix cache served {:.1} % of the prompt tokens it looked up.",
            rate * 100.0
        )),
        None => findings.push(
            "The server reported no prefix-cache token counters, so the run has no hit rate."
                .into(),
        ),
    }

    if let Some((first, last, first_ms, last_ms)) = ttft_trend(result) {
        let sentence = if last_ms > first_ms * TTFT_GROWTH_FACTOR {
            format!(
                "Median TTFT grew from {first_ms:.1} ms at turn {first} to {last_ms:.1} ms at \
                 turn {last}: the server recomputes more of the growing context."
            )
        } else {
            format!(
                "Median TTFT stayed level across turns ({first_ms:.1} ms at turn {first}, \
                 {last_ms:.1} ms at turn {last})."
            )
        };
        findings.push(sentence);
    }

    let peak_waiting = result
        .system_metrics
        .iter()
        .filter_map(|snapshot| snapshot.num_requests_waiting)
        .fold(None, |peak: Option<f64>, value| {
            Some(peak.map_or(value, |peak| peak.max(value)))
        });
    if let Some(peak) = peak_waiting
        && peak > 0.0
    {
        findings.push(format!(
            "Requests queued on the server: up to {peak:.0} waiting at one scrape."
        ));
    }

    if summary.context_overflows > 0 {
        findings.push(format!(
            "{} users stopped on a context overflow: even a compacted request reached \
             --max-context-tokens.",
            summary.context_overflows
        ));
    }
    if result.config.token_counts_approximate {
        findings.push(
            "Token counts come from the built-in byte-level tokenizer and only approximate the \
             model's."
                .into(),
        );
    }
    findings
}

/// Returns the first and last turn index that at least one user completed, with the median
/// TTFT over users at each.
fn ttft_trend(result: &RunResult) -> Option<(usize, usize, f64, f64)> {
    let medians = super::document::median_ttft_by_turn(result);
    let (first, first_ms) = medians.first().copied()?;
    let (last, last_ms) = medians.last().copied()?;
    (last > first).then_some((first, last, first_ms, last_ms))
}
