//! Turns the users' outcomes and the poller's report into the result JSON's summary,
//! per-user aggregates and timeline.

use std::time::Duration;

use url::Url;

use crate::config::{RunConfig, SystemPrefixSource, Target};
use crate::prom::PollReport;
use crate::result::{
    MockSettingsRecord, RunConfigRecord, RunResult, SCHEMA_VERSION, Summary, TimelineEvent,
    TurnRecord, UserAggregate, UserResult,
};
use crate::stats::{LatencyHistogram, LatencyStats};

use super::user::{CONTEXT_OVERFLOW, UserOutcome};

pub(super) fn build_result(
    config: &RunConfig,
    started_at: f64,
    duration: Duration,
    metrics_url: Option<&Url>,
    outcomes: Vec<UserOutcome>,
    itl: &LatencyHistogram,
    poll_report: PollReport,
) -> RunResult {
    let mut ttft = LatencyHistogram::new();
    let mut first_content = LatencyHistogram::new();
    let mut tpot = LatencyHistogram::new();
    let mut e2e = LatencyHistogram::new();
    let mut timeline = Vec::new();
    let mut users = Vec::with_capacity(outcomes.len());
    let mut summary = Summary {
        started_at,
        duration_s: duration.as_secs_f64(),
        total_users: outcomes.len(),
        ..Summary::default()
    };
    let mut server_prompt_tokens = None::<u64>;
    let mut server_cached_tokens = None::<u64>;

    for outcome in outcomes {
        record_all(&mut ttft, &outcome.ttft);
        record_all(&mut first_content, &outcome.time_to_first_content);
        record_all(&mut tpot, &outcome.tpot);
        record_all(&mut e2e, &outcome.e2e);
        timeline.extend(user_timeline(&outcome));

        summary.aborted_turns += outcome.aborted_turns;
        for turn in &outcome.turns {
            summary.total_turns += 1;
            if turn.success {
                summary.successful_turns += 1;
                summary.total_input_tokens += turn.input_tokens;
                summary.total_output_tokens += turn.output_tokens.unwrap_or(0);
            } else {
                summary.failed_turns += 1;
            }
            if let Some(error) = &turn.error {
                *summary
                    .errors_by_class
                    .entry(error.class.clone())
                    .or_default() += 1;
                if error.class == CONTEXT_OVERFLOW {
                    summary.context_overflows += 1;
                }
            }
            if turn.compaction_triggered {
                summary.total_compactions += 1;
            }
            if let Some(tokens) = turn.server_prompt_tokens {
                *server_prompt_tokens.get_or_insert(0) += tokens;
            }
            if let Some(tokens) = turn.server_cached_tokens {
                *server_cached_tokens.get_or_insert(0) += tokens;
            }
        }
        users.push(user_result(outcome));
    }

    summary.total_server_prompt_tokens = server_prompt_tokens;
    summary.total_server_cached_tokens = server_cached_tokens;
    let seconds = duration.as_secs_f64();
    if seconds > 0.0 {
        summary.output_throughput_tok_s = summary.total_output_tokens as f64 / seconds;
        summary.request_throughput_per_s = summary.successful_turns as f64 / seconds;
    }
    summary.ttft = ttft.summary();
    summary.time_to_first_content = first_content.summary();
    summary.tpot = tpot.summary();
    summary.itl = itl.summary();
    summary.e2e_latency = e2e.summary();
    if let Some(delta) = poll_report.prefix_cache_delta() {
        summary.prefix_cache_token_hit_rate = delta.token_hit_rate;
        summary.prefix_cache_hit_tokens_delta = delta.hit_tokens_delta;
        summary.prefix_cache_query_tokens_delta = delta.query_tokens_delta;
        summary.external_prefix_cache_token_hit_rate = delta.external_token_hit_rate;
        summary.external_prefix_cache_hit_tokens_delta = delta.external_hit_tokens_delta;
        summary.external_prefix_cache_query_tokens_delta = delta.external_query_tokens_delta;
    }
    summary.metrics_scrape_errors = poll_report.scrape_errors;
    timeline.sort_by(|a, b| event_time(a).total_cmp(&event_time(b)));

    RunResult {
        schema_version: SCHEMA_VERSION,
        clawperf_version: env!("CARGO_PKG_VERSION").to_owned(),
        config: config_record(config, metrics_url),
        summary,
        users,
        system_metrics: poll_report.samples,
        timeline,
    }
}

fn record_all(histogram: &mut LatencyHistogram, samples: &[Duration]) {
    for sample in samples {
        histogram.record(*sample);
    }
}

fn summary_of(samples: &[Duration]) -> Option<LatencyStats> {
    let mut histogram = LatencyHistogram::new();
    record_all(&mut histogram, samples);
    histogram.summary()
}

fn user_result(outcome: UserOutcome) -> UserResult {
    let mut aggregate = UserAggregate {
        ttft: summary_of(&outcome.ttft),
        tpot: summary_of(&outcome.tpot),
        e2e_latency: summary_of(&outcome.e2e),
        stop_reason: outcome.stop_reason.as_str().to_owned(),
        ..UserAggregate::default()
    };
    for turn in &outcome.turns {
        aggregate.total_turns += 1;
        if turn.success {
            aggregate.successful_turns += 1;
            aggregate.total_input_tokens += turn.input_tokens;
            aggregate.total_output_tokens += turn.output_tokens.unwrap_or(0);
        }
        if let Some(error) = &turn.error {
            aggregate.error_count += 1;
            *aggregate
                .errors_by_class
                .entry(error.class.clone())
                .or_default() += 1;
        }
        if turn.compaction_triggered {
            aggregate.compaction_count += 1;
        }
    }
    let active_s = outcome.stopped_s - outcome.started_s;
    if active_s > 0.0 {
        aggregate.throughput_tok_s = aggregate.total_output_tokens as f64 / active_s;
    }
    UserResult {
        user_id: outcome.user_id,
        aggregate,
        turns: outcome.turns,
    }
}

fn user_timeline(outcome: &UserOutcome) -> Vec<TimelineEvent> {
    let user_id = outcome.user_id;
    let mut events = vec![TimelineEvent::UserStart {
        t_s: outcome.started_s,
        user_id,
    }];
    for turn in &outcome.turns {
        events.extend(turn_timeline(user_id, turn));
    }
    events.push(TimelineEvent::UserStop {
        t_s: outcome.stopped_s,
        user_id,
        reason: outcome.stop_reason.as_str().to_owned(),
    });
    events
}

fn turn_timeline(user_id: usize, turn: &TurnRecord) -> Vec<TimelineEvent> {
    let turn_id = turn.turn_id;
    let overflowed = turn
        .error
        .as_ref()
        .is_some_and(|error| error.class == CONTEXT_OVERFLOW);
    if overflowed {
        return vec![TimelineEvent::ContextOverflow {
            t_s: turn.start_s,
            user_id,
            turn_id,
            request_tokens: turn.input_tokens,
        }];
    }
    let mut events = Vec::with_capacity(3);
    if turn.compaction_triggered {
        events.push(TimelineEvent::Compaction {
            t_s: turn.start_s,
            user_id,
            turn_id,
            user_prefix_tokens: turn.user_prefix_tokens,
        });
    }
    events.push(TimelineEvent::TurnStart {
        t_s: turn.start_s,
        user_id,
        turn_id,
        input_tokens: turn.input_tokens,
    });
    let end_ms = turn.stream_end_ms.unwrap_or(0.0);
    events.push(TimelineEvent::TurnEnd {
        t_s: turn.start_s + end_ms / 1000.0,
        user_id,
        turn_id,
        success: turn.success,
    });
    events
}

fn event_time(event: &TimelineEvent) -> f64 {
    match *event {
        TimelineEvent::UserStart { t_s, .. }
        | TimelineEvent::UserStop { t_s, .. }
        | TimelineEvent::TurnStart { t_s, .. }
        | TimelineEvent::TurnEnd { t_s, .. }
        | TimelineEvent::Compaction { t_s, .. }
        | TimelineEvent::ContextOverflow { t_s, .. } => t_s,
    }
}

fn config_record(config: &RunConfig, metrics_url: Option<&Url>) -> RunConfigRecord {
    let mock = match config.target {
        Target::Mock { ttft, tpot } => Some(MockSettingsRecord {
            ttft_ms: ttft.as_secs_f64() * 1000.0,
            tpot_ms: tpot.as_secs_f64() * 1000.0,
        }),
        Target::Remote { .. } => None,
    };
    RunConfigRecord {
        endpoint: config.endpoint.clone(),
        model: config.model.clone(),
        num_users: config.num_users,
        user_arrival: config.arrival.to_string(),
        system_prefix_tokens: config.system_prefix_tokens,
        system_prefix_source: match &config.system_prefix_source {
            SystemPrefixSource::Random => "random".to_owned(),
            SystemPrefixSource::File { path, .. } => path.display().to_string(),
        },
        user_prefix_tokens: config.shape.user_prefix_tokens,
        input_tokens_per_turn: config.shape.input_tokens_per_turn,
        output_tokens_per_turn: config.shape.output_tokens_per_turn,
        max_context_tokens: config.shape.max_context_tokens,
        compaction_prefix_increment: config.shape.compaction_prefix_increment,
        max_turns: config.max_turns,
        ignore_eos: config.ignore_eos,
        request_timeout_s: config.request_timeout.as_secs_f64(),
        idle_timeout_s: config.idle_timeout.map(|timeout| timeout.as_secs_f64()),
        max_consecutive_failures: config.max_consecutive_failures,
        metrics_endpoint: metrics_url.map(Url::to_string),
        metrics_interval_s: config.metrics_interval.as_secs_f64(),
        backend: config.backend.to_string(),
        tokenizer: config.tokenizer.source().to_string(),
        token_counts_approximate: config.tokenizer_is_builtin,
        seed: config.seed,
        mock,
    }
}
