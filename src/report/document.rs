//! The content of a run report, independent of its format: sections of paragraphs, lists,
//! tables and charts. The Markdown and HTML writers render the same [`Document`].

use std::collections::BTreeMap;

use crate::result::RunResult;
use crate::stats::LatencyStats;

use super::figures::{Figure, build_figures};
use super::verdict::findings;

/// A report: a title, a line under it and its sections.
#[derive(Debug, Clone)]
pub struct Document {
    pub title: String,
    pub subtitle: String,
    pub sections: Vec<Section>,
}

#[derive(Debug, Clone)]
pub struct Section {
    pub title: String,
    pub blocks: Vec<Block>,
}

#[derive(Debug, Clone)]
pub enum Block {
    Paragraph(String),
    List(Vec<String>),
    Table(Table),
    /// Charts, which only the HTML report draws.
    Figures(Vec<Figure>),
}

/// A table whose first column is text and whose other columns are right-aligned numbers.
#[derive(Debug, Clone)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Builds the report of `result`.
pub fn build_document(result: &RunResult) -> Document {
    let config = &result.config;
    let summary = &result.summary;
    Document {
        title: format!("clawperf report: {} on {}", config.model, config.endpoint),
        subtitle: format!(
            "clawperf {}, run started {} UTC, {:.1} s",
            result.clawperf_version,
            format_unix_time(summary.started_at),
            summary.duration_s
        ),
        sections: vec![
            Section {
                title: "Verdict".into(),
                blocks: vec![Block::List(findings(result))],
            },
            Section {
                title: "Charts".into(),
                blocks: vec![Block::Figures(build_figures(result))],
            },
            Section {
                title: "Summary".into(),
                blocks: vec![Block::Table(summary_table(result))],
            },
            Section {
                title: "Latency (ms)".into(),
                blocks: vec![Block::Table(latency_table(result))],
            },
            Section {
                title: "Prefix cache".into(),
                blocks: vec![
                    Block::Paragraph(
                        "Δhits / Δqueries of the server's token counters between the scrape \
                         before the first request and the scrape after the last."
                            .into(),
                    ),
                    Block::Table(cache_table(result)),
                ],
            },
            Section {
                title: "Users".into(),
                blocks: vec![Block::Table(users_table(result))],
            },
            Section {
                title: "Turns".into(),
                blocks: vec![
                    Block::Paragraph(
                        "Per turn index, over the users that reached it: median TTFT and \
                         context, and how many compacted."
                            .into(),
                    ),
                    Block::Table(turns_table(result)),
                ],
            },
            Section {
                title: "Workload".into(),
                blocks: vec![Block::Table(workload_table(result))],
            },
        ],
    }
}

fn summary_table(result: &RunResult) -> Table {
    let summary = &result.summary;
    let mut rows = vec![
        row(["requests (turns)", &summary.total_turns.to_string()]),
        row(["successful", &summary.successful_turns.to_string()]),
        row(["failed", &summary.failed_turns.to_string()]),
    ];
    for (class, count) in &summary.errors_by_class {
        rows.push(row([&format!("failed: {class}"), &count.to_string()]));
    }
    rows.extend([
        row(["input tokens", &summary.total_input_tokens.to_string()]),
        row(["output tokens", &summary.total_output_tokens.to_string()]),
        row([
            "output throughput (tok/s)",
            &format!("{:.1}", summary.output_throughput_tok_s),
        ]),
        row([
            "request throughput (req/s)",
            &format!("{:.3}", summary.request_throughput_per_s),
        ]),
        row(["compactions", &summary.total_compactions.to_string()]),
        row(["context overflows", &summary.context_overflows.to_string()]),
        row(["duration (s)", &format!("{:.2}", summary.duration_s)]),
    ]);
    Table {
        header: vec!["metric".into(), "value".into()],
        rows,
    }
}

fn latency_table(result: &RunResult) -> Table {
    let summary = &result.summary;
    let metrics = [
        ("TTFT", summary.ttft),
        ("time to first content", summary.time_to_first_content),
        ("TPOT", summary.tpot),
        ("ITL", summary.itl),
        ("E2E latency", summary.e2e_latency),
    ];
    let rows = metrics
        .into_iter()
        .map(|(name, stats)| {
            let mut cells = vec![name.to_owned()];
            match stats {
                Some(s) => {
                    cells.push(s.count.to_string());
                    for value in [s.avg, s.min, s.p50, s.p90, s.p95, s.p99, s.max] {
                        cells.push(format!("{value:.2}"));
                    }
                }
                None => {
                    cells.push("0".into());
                    cells.extend(std::iter::repeat_n("-".to_owned(), 7));
                }
            }
            cells
        })
        .collect();
    Table {
        header: [
            "metric", "count", "avg", "min", "P50", "P90", "P95", "P99", "max",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

fn cache_table(result: &RunResult) -> Table {
    let summary = &result.summary;
    let tier = |name: &str, rate: Option<f64>, hits: Option<f64>, queries: Option<f64>| {
        vec![
            name.to_owned(),
            rate.map_or("not reported".into(), |rate| {
                format!("{:.2} %", rate * 100.0)
            }),
            hits.map_or("-".into(), |hits| format!("{hits:.0}")),
            queries.map_or("-".into(), |queries| format!("{queries:.0}")),
        ]
    };
    let mut rows = vec![
        tier(
            "HBM",
            summary.prefix_cache_token_hit_rate,
            summary.prefix_cache_hit_tokens_delta,
            summary.prefix_cache_query_tokens_delta,
        ),
        tier(
            "external",
            summary.external_prefix_cache_token_hit_rate,
            summary.external_prefix_cache_hit_tokens_delta,
            summary.external_prefix_cache_query_tokens_delta,
        ),
    ];
    if let (Some(cached), Some(prompt)) = (
        summary.total_server_cached_tokens,
        summary.total_server_prompt_tokens,
    ) {
        let rate = if prompt > 0 {
            format!("{:.2} %", cached as f64 / prompt as f64 * 100.0)
        } else {
            "-".into()
        };
        rows.push(vec![
            "usage.cached_tokens".into(),
            rate,
            cached.to_string(),
            prompt.to_string(),
        ]);
    }
    Table {
        header: ["tier", "hit rate", "hit tokens", "query tokens"]
            .map(String::from)
            .to_vec(),
        rows,
    }
}

fn users_table(result: &RunResult) -> Table {
    let p = |stats: Option<LatencyStats>, pick: fn(&LatencyStats) -> f64| {
        stats.map_or("-".to_owned(), |s| format!("{:.2}", pick(&s)))
    };
    let rows = result
        .users
        .iter()
        .map(|user| {
            let a = &user.aggregate;
            vec![
                user.user_id.to_string(),
                a.total_turns.to_string(),
                a.successful_turns.to_string(),
                a.error_count.to_string(),
                a.total_input_tokens.to_string(),
                a.total_output_tokens.to_string(),
                format!("{:.1}", a.throughput_tok_s),
                p(a.ttft, |s| s.p50),
                p(a.ttft, |s| s.p99),
                p(a.tpot, |s| s.p50),
                a.compaction_count.to_string(),
                a.stop_reason.clone(),
            ]
        })
        .collect();
    Table {
        header: [
            "user",
            "turns",
            "ok",
            "errors",
            "input tokens",
            "output tokens",
            "tok/s",
            "TTFT P50",
            "TTFT P99",
            "TPOT P50",
            "compactions",
            "stop",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

fn turns_table(result: &RunResult) -> Table {
    let mut by_turn: BTreeMap<usize, (Vec<f64>, Vec<f64>, u64, u64)> = BTreeMap::new();
    for turn in result.users.iter().flat_map(|user| &user.turns) {
        let entry = by_turn.entry(turn.turn_id).or_default();
        if let Some(ttft) = turn.ttft_ms {
            entry.0.push(ttft);
        }
        entry.1.push(turn.context_tokens as f64);
        entry.2 += 1;
        entry.3 += u64::from(turn.compaction_triggered);
    }
    let rows = by_turn
        .into_iter()
        .map(|(turn_id, (mut ttfts, mut contexts, users, compactions))| {
            vec![
                turn_id.to_string(),
                users.to_string(),
                median(&mut ttfts).map_or("-".into(), |ms| format!("{ms:.2}")),
                median(&mut contexts).map_or("-".into(), |tokens| format!("{tokens:.0}")),
                compactions.to_string(),
            ]
        })
        .collect();
    Table {
        header: [
            "turn",
            "users",
            "median TTFT (ms)",
            "median context (tokens)",
            "compactions",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

fn workload_table(result: &RunResult) -> Table {
    let c = &result.config;
    let mut rows = vec![
        row(["endpoint", &c.endpoint]),
        row(["model", &c.model]),
        row(["tokenizer", &c.tokenizer]),
        row(["users", &c.num_users.to_string()]),
        row(["user arrival", &c.user_arrival]),
        row(["max turns", &c.max_turns.to_string()]),
        row(["system prefix tokens", &c.system_prefix_tokens.to_string()]),
        row(["user prefix tokens", &c.user_prefix_tokens.to_string()]),
        row([
            "input tokens per turn",
            &c.input_tokens_per_turn.to_string(),
        ]),
        row([
            "output tokens per turn",
            &c.output_tokens_per_turn.to_string(),
        ]),
        row(["max context tokens", &c.max_context_tokens.to_string()]),
        row([
            "compaction prefix increment",
            &c.compaction_prefix_increment.to_string(),
        ]),
        row(["backend", &c.backend]),
        row(["metrics interval (s)", &c.metrics_interval_s.to_string()]),
        row(["seed", &c.seed.to_string()]),
    ];
    if let Some(mock) = &c.mock {
        rows.push(row([
            "mock TTFT / TPOT (ms)",
            &format!("{} / {}", mock.ttft_ms, mock.tpot_ms),
        ]));
    }
    Table {
        header: vec!["option".into(), "value".into()],
        rows,
    }
}

/// Returns, for each turn index that has a successful turn, the median TTFT over users.
pub fn median_ttft_by_turn(result: &RunResult) -> Vec<(usize, f64)> {
    let mut by_turn: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for turn in result.users.iter().flat_map(|user| &user.turns) {
        if let Some(ttft) = turn.ttft_ms {
            by_turn.entry(turn.turn_id).or_default().push(ttft);
        }
    }
    by_turn
        .into_iter()
        .filter_map(|(turn_id, mut values)| Some((turn_id, median(&mut values)?)))
        .collect()
}

/// Returns the median, the mean of the two middle values for an even count.
fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    })
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.map(str::to_owned).to_vec()
}

/// Formats Unix seconds as `YYYY-MM-DD HH:MM:SS` in UTC.
fn format_unix_time(seconds: f64) -> String {
    let total = seconds.max(0.0) as i64;
    let (days, rest) = (total.div_euclid(86_400), total.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian date, by Howard Hinnant's
/// `civil_from_days` algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_formats_as_utc() {
        assert_eq!(format_unix_time(0.0), "1970-01-01 00:00:00");
        assert_eq!(format_unix_time(1_709_251_199.5), "2024-02-29 23:59:59");
    }

    #[test]
    fn median_of_even_count_is_the_middle_mean() {
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }
}
