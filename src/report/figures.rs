//! The charts of the HTML report, built from a result JSON.

use crate::prom::MetricsSnapshot;
use crate::result::RunResult;

use super::chart::{BarChart, LineChart, Series};

/// Bins of the TTFT histogram.
const HISTOGRAM_BINS: usize = 12;

/// One chart of the report and the sentence under it.
#[derive(Debug, Clone)]
pub struct Figure {
    pub svg: String,
    pub caption: String,
}

/// Builds every chart of the report, in reading order.
pub fn build_figures(result: &RunResult) -> Vec<Figure> {
    vec![
        Figure {
            svg: ttft_per_turn(result).to_svg(),
            caption: "TTFT of every successful turn, one line per user. A prefix cache that \
                      works keeps it flat while the context grows."
                .into(),
        },
        Figure {
            svg: context_per_turn(result).to_svg(),
            caption: "Context after each turn (prompt plus output tokens); rings mark turns \
                      that compacted the conversation."
                .into(),
        },
        Figure {
            svg: cache_hit_rate_over_time(&result.system_metrics).to_svg(),
            caption: "Server prefix-cache hit rate between successive scrapes of the metrics \
                      endpoint (Δhits / Δqueries in tokens), and since the run start."
                .into(),
        },
        Figure {
            svg: queue_depth_over_time(&result.system_metrics).to_svg(),
            caption: "Requests the server reported as running and waiting at each scrape.".into(),
        },
        Figure {
            svg: ttft_histogram(result).to_svg(),
            caption: "Distribution of per-turn TTFT.".into(),
        },
        Figure {
            svg: itl_percentiles(result).to_svg(),
            caption: "ITL percentiles over every gap between text-bearing events of the run \
                      (the result JSON keeps the summary, not each gap)."
                .into(),
        },
    ]
}

pub fn ttft_per_turn(result: &RunResult) -> LineChart {
    let series = result
        .users
        .iter()
        .map(|user| Series {
            name: format!("user {}", user.user_id),
            points: user
                .turns
                .iter()
                .filter_map(|turn| Some((turn.turn_id as f64, turn.ttft_ms?)))
                .collect(),
            marked: Vec::new(),
        })
        .collect();
    LineChart {
        title: "TTFT per turn".into(),
        x_label: "turn".into(),
        y_label: "TTFT (ms)".into(),
        series,
        marker_label: None,
    }
}

pub fn context_per_turn(result: &RunResult) -> LineChart {
    let series = result
        .users
        .iter()
        .map(|user| {
            let point = |turn: &crate::result::TurnRecord| {
                (turn.turn_id as f64, turn.context_tokens as f64)
            };
            Series {
                name: format!("user {}", user.user_id),
                points: user.turns.iter().map(point).collect(),
                marked: user
                    .turns
                    .iter()
                    .filter(|turn| turn.compaction_triggered)
                    .map(point)
                    .collect(),
            }
        })
        .collect();
    LineChart {
        title: "Context size per turn".into(),
        x_label: "turn".into(),
        y_label: "context (tokens)".into(),
        series,
        marker_label: Some("compaction".into()),
    }
}

pub fn cache_hit_rate_over_time(snapshots: &[MetricsSnapshot]) -> LineChart {
    let hbm = |snapshot: &MetricsSnapshot| {
        Some((
            snapshot.prefix_cache_hits_tokens?,
            snapshot.prefix_cache_queries_tokens?,
        ))
    };
    let external = |snapshot: &MetricsSnapshot| {
        Some((
            snapshot.external_prefix_cache_hits_tokens?,
            snapshot.external_prefix_cache_queries_tokens?,
        ))
    };
    let mut series = vec![
        Series {
            name: "HBM, per interval".into(),
            points: interval_rates(snapshots, hbm),
            marked: Vec::new(),
        },
        Series {
            name: "HBM, since start".into(),
            points: cumulative_rates(snapshots, hbm),
            marked: Vec::new(),
        },
    ];
    let external_points = interval_rates(snapshots, external);
    if !external_points.is_empty() {
        series.push(Series {
            name: "external, per interval".into(),
            points: external_points,
            marked: Vec::new(),
        });
    }
    LineChart {
        title: "Prefix-cache hit rate over time".into(),
        x_label: "time since run start (s)".into(),
        y_label: "hit rate (%)".into(),
        series,
        marker_label: None,
    }
}

/// Returns the hit rate in percent between successive snapshots, at the later one's time.
/// Intervals without queries, or where a counter went down (a server restart), have no rate.
fn interval_rates(
    snapshots: &[MetricsSnapshot],
    counters: impl Fn(&MetricsSnapshot) -> Option<(f64, f64)>,
) -> Vec<(f64, f64)> {
    snapshots
        .windows(2)
        .filter_map(|pair| {
            let (hits_before, queries_before) = counters(&pair[0])?;
            let (hits_after, queries_after) = counters(&pair[1])?;
            let hits = hits_after - hits_before;
            let queries = queries_after - queries_before;
            (queries > 0.0 && hits >= 0.0).then(|| (pair[1].elapsed_s, hits / queries * 100.0))
        })
        .collect()
}

fn cumulative_rates(
    snapshots: &[MetricsSnapshot],
    counters: impl Fn(&MetricsSnapshot) -> Option<(f64, f64)>,
) -> Vec<(f64, f64)> {
    let Some((hits_start, queries_start)) = snapshots.first().and_then(&counters) else {
        return Vec::new();
    };
    snapshots
        .iter()
        .filter_map(|snapshot| {
            let (hits, queries) = counters(snapshot)?;
            let queries = queries - queries_start;
            let hits = hits - hits_start;
            (queries > 0.0 && hits >= 0.0).then(|| (snapshot.elapsed_s, hits / queries * 100.0))
        })
        .collect()
}

pub fn queue_depth_over_time(snapshots: &[MetricsSnapshot]) -> LineChart {
    let gauge = |read: fn(&MetricsSnapshot) -> Option<f64>| -> Vec<(f64, f64)> {
        snapshots
            .iter()
            .filter_map(|snapshot| Some((snapshot.elapsed_s, read(snapshot)?)))
            .collect()
    };
    LineChart {
        title: "Server queue depth over time".into(),
        x_label: "time since run start (s)".into(),
        y_label: "requests".into(),
        series: vec![
            Series {
                name: "running".into(),
                points: gauge(|snapshot| snapshot.num_requests_running),
                marked: Vec::new(),
            },
            Series {
                name: "waiting".into(),
                points: gauge(|snapshot| snapshot.num_requests_waiting),
                marked: Vec::new(),
            },
        ],
        marker_label: None,
    }
}

pub fn ttft_histogram(result: &RunResult) -> BarChart {
    let values: Vec<f64> = result
        .users
        .iter()
        .flat_map(|user| &user.turns)
        .filter_map(|turn| turn.ttft_ms)
        .collect();
    BarChart {
        title: "TTFT distribution".into(),
        x_label: "TTFT, bin start (ms)".into(),
        y_label: "turns".into(),
        bars: histogram(&values, HISTOGRAM_BINS),
    }
}

/// Counts `values` in `bins` equal-width bins from their minimum to their maximum, each
/// labelled with its lower edge.
fn histogram(values: &[f64], bins: usize) -> Vec<(String, f64)> {
    let Some(min) = values.iter().copied().reduce(f64::min) else {
        return Vec::new();
    };
    let max = values.iter().copied().fold(min, f64::max);
    let width = if max > min {
        (max - min) / bins as f64
    } else {
        1.0
    };
    let mut counts = vec![0u64; bins];
    for value in values {
        let bin = (((value - min) / width) as usize).min(bins - 1);
        counts[bin] += 1;
    }
    // Enough decimals that neighbouring bin labels differ.
    let decimals = if width >= 10.0 {
        0
    } else if width >= 1.0 {
        1
    } else {
        2
    };
    counts
        .into_iter()
        .enumerate()
        .map(|(bin, count)| {
            let start = min + width * bin as f64;
            (format!("{start:.decimals$}"), count as f64)
        })
        .collect()
}

pub fn itl_percentiles(result: &RunResult) -> BarChart {
    let bars = match &result.summary.itl {
        Some(itl) => vec![
            ("min".to_owned(), itl.min),
            ("P50".to_owned(), itl.p50),
            ("avg".to_owned(), itl.avg),
            ("P90".to_owned(), itl.p90),
            ("P95".to_owned(), itl.p95),
            ("P99".to_owned(), itl.p99),
            ("max".to_owned(), itl.max),
        ],
        None => Vec::new(),
    };
    BarChart {
        title: "ITL distribution".into(),
        x_label: "statistic".into(),
        y_label: "ITL (ms)".into(),
        bars,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(elapsed_s: f64, hits: f64, queries: f64) -> MetricsSnapshot {
        MetricsSnapshot {
            elapsed_s,
            prefix_cache_hits_tokens: Some(hits),
            prefix_cache_queries_tokens: Some(queries),
            ..MetricsSnapshot::default()
        }
    }

    #[test]
    fn interval_rates_skip_idle_and_reset_intervals() {
        let snapshots = [
            snapshot(0.0, 0.0, 0.0),
            snapshot(1.0, 50.0, 100.0),
            snapshot(2.0, 50.0, 100.0),
            snapshot(3.0, 10.0, 300.0),
            snapshot(4.0, 70.0, 400.0),
        ];
        let hbm = |s: &MetricsSnapshot| {
            Some((s.prefix_cache_hits_tokens?, s.prefix_cache_queries_tokens?))
        };
        assert_eq!(
            interval_rates(&snapshots, hbm),
            vec![(1.0, 50.0), (4.0, 60.0)]
        );
    }

    #[test]
    fn histogram_puts_the_maximum_in_the_last_bin() {
        let bars = histogram(&[1.0, 2.0, 3.0, 5.0], 4);
        let counts: Vec<f64> = bars.iter().map(|bar| bar.1).collect();
        assert_eq!(counts, vec![1.0, 1.0, 1.0, 1.0]);
    }
}
