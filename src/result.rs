//! The standard result JSON: what a run writes and what scripts read.
//!
//! Field names are part of the interface (scripts written for the original ClawPerf read
//! them), so renaming one is a breaking change that needs a new `schema_version`. Latencies are
//! in milliseconds, times since the run start in seconds, token counts in tokens. A value that
//! was not measured is absent (`null`), never 0.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::prom::MetricsSnapshot;
use crate::stats::LatencyStats;

/// Version of the result JSON layout.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub schema_version: u32,
    pub clawperf_version: String,
    pub config: RunConfigRecord,
    pub summary: Summary,
    pub users: Vec<UserResult>,
    /// Server metrics: the start snapshot, every periodic scrape and the end snapshot.
    pub system_metrics: Vec<MetricsSnapshot>,
    pub timeline: Vec<TimelineEvent>,
}

/// The configuration the run used, with every default filled in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfigRecord {
    pub endpoint: String,
    pub model: String,
    pub num_users: usize,
    pub user_arrival: String,
    pub system_prefix_tokens: usize,
    pub system_prefix_source: String,
    pub user_prefix_tokens: usize,
    pub input_tokens_per_turn: usize,
    pub output_tokens_per_turn: usize,
    pub max_context_tokens: usize,
    pub compaction_prefix_increment: usize,
    pub max_turns: usize,
    pub ignore_eos: bool,
    pub request_timeout_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_consecutive_failures: Option<usize>,
    pub metrics_endpoint: Option<String>,
    pub metrics_interval_s: f64,
    pub backend: String,
    pub tokenizer: String,
    /// True when the built-in tokenizer was used, so token counts only approximate a real
    /// model's.
    pub token_counts_approximate: bool,
    pub seed: u64,
    /// Latency settings of the embedded mock server, when `--endpoint mock` was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mock: Option<MockSettingsRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MockSettingsRecord {
    pub ttft_ms: f64,
    pub tpot_ms: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Unix time of the run start, in seconds.
    pub started_at: f64,
    pub duration_s: f64,
    pub total_users: usize,
    pub total_turns: u64,
    pub successful_turns: u64,
    pub failed_turns: u64,
    pub context_overflows: u64,
    pub errors_by_class: BTreeMap<String, u64>,
    /// Prompt tokens of successful turns, as counted by the client.
    pub total_input_tokens: u64,
    pub total_output_tokens: u64,
    /// Sum of the server's `usage.prompt_tokens` over the turns that reported it.
    pub total_server_prompt_tokens: Option<u64>,
    /// Sum of the server's `usage.prompt_tokens_details.cached_tokens` where reported.
    pub total_server_cached_tokens: Option<u64>,
    /// Output tokens of all successful turns divided by the run's duration.
    pub output_throughput_tok_s: f64,
    pub request_throughput_per_s: f64,
    pub ttft: Option<LatencyStats>,
    /// Time to the first visible `content`, which differs from TTFT when reasoning came first.
    pub time_to_first_content: Option<LatencyStats>,
    pub tpot: Option<LatencyStats>,
    pub itl: Option<LatencyStats>,
    pub e2e_latency: Option<LatencyStats>,
    /// Δhits / Δqueries of the server's prefix-cache token counters over the run.
    pub prefix_cache_token_hit_rate: Option<f64>,
    pub prefix_cache_hit_tokens_delta: Option<f64>,
    pub prefix_cache_query_tokens_delta: Option<f64>,
    pub external_prefix_cache_token_hit_rate: Option<f64>,
    pub external_prefix_cache_hit_tokens_delta: Option<f64>,
    pub external_prefix_cache_query_tokens_delta: Option<f64>,
    pub total_compactions: u64,
    /// Scrapes of the metrics endpoint that failed.
    pub metrics_scrape_errors: u64,
    /// True when the run was stopped (Ctrl-C, SIGTERM) before every user finished; the result
    /// then has the turns that finished before the stop.
    #[serde(default)]
    pub interrupted: bool,
    /// Turns in flight when the run was stopped that did not finish within the grace period.
    /// They have no turn record and are not counted in `total_turns`.
    #[serde(default)]
    pub aborted_turns: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserResult {
    pub user_id: usize,
    pub aggregate: UserAggregate,
    pub turns: Vec<TurnRecord>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UserAggregate {
    pub total_turns: u64,
    pub successful_turns: u64,
    pub total_input_tokens: u64,
    pub total_output_tokens: u64,
    pub ttft: Option<LatencyStats>,
    pub tpot: Option<LatencyStats>,
    pub e2e_latency: Option<LatencyStats>,
    /// Output tokens divided by the time from the user's first request to its last reply.
    pub throughput_tok_s: f64,
    pub error_count: u64,
    pub errors_by_class: BTreeMap<String, u64>,
    pub compaction_count: u64,
    /// Why the user stopped: `max_turns`, `context_overflow`, `consecutive_failures` or
    /// `interrupted`.
    pub stop_reason: String,
}

/// Source of an output-token count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenCountSource {
    /// The server's `usage.completion_tokens`.
    Usage,
    /// The client re-encoded the output text with its tokenizer.
    Tokenizer,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TurnRecord {
    /// 1-based index of the turn within the user's conversation.
    pub turn_id: usize,
    pub success: bool,
    /// Seconds from the run start to the moment the request was sent.
    pub start_s: f64,
    pub ttft_ms: Option<f64>,
    pub time_to_first_content_ms: Option<f64>,
    pub e2e_latency_ms: Option<f64>,
    /// Time to the end of the stream (`[DONE]` or EOF), after the last token.
    pub stream_end_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    pub itl_count: u64,
    pub itl_mean_ms: Option<f64>,
    pub itl_max_ms: Option<f64>,
    /// Prompt tokens as counted by the client after the chat template.
    pub input_tokens: u64,
    /// Tokens of new input in this turn (without user prefix and history).
    pub new_input_tokens: u64,
    pub output_tokens: Option<u64>,
    pub output_tokens_source: Option<TokenCountSource>,
    /// The context after this turn: prompt tokens plus output tokens.
    pub context_tokens: u64,
    pub user_prefix_tokens: u64,
    pub compaction_triggered: bool,
    pub server_prompt_tokens: Option<u64>,
    pub server_completion_tokens: Option<u64>,
    pub server_cached_tokens: Option<u64>,
    pub finish_reason: Option<String>,
    pub error: Option<TurnError>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TurnError {
    /// `context_overflow` for a turn that was not sent, else the client's failure class.
    pub class: String,
    pub message: String,
    /// HTTP status, `null` when the failure happened before or outside an HTTP response.
    #[serde(default)]
    pub status: Option<u16>,
}

/// One event of the run, in time order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TimelineEvent {
    UserStart {
        t_s: f64,
        user_id: usize,
    },
    UserStop {
        t_s: f64,
        user_id: usize,
        reason: String,
    },
    TurnStart {
        t_s: f64,
        user_id: usize,
        turn_id: usize,
        input_tokens: u64,
    },
    TurnEnd {
        t_s: f64,
        user_id: usize,
        turn_id: usize,
        success: bool,
    },
    Compaction {
        t_s: f64,
        user_id: usize,
        turn_id: usize,
        user_prefix_tokens: u64,
    },
    ContextOverflow {
        t_s: f64,
        user_id: usize,
        turn_id: usize,
        request_tokens: u64,
    },
}

impl RunResult {
    /// Writes the result as pretty JSON, through a temporary file and a rename so that a
    /// reader never sees half a file.
    pub fn write_json(&self, path: &std::path::Path) -> std::io::Result<()> {
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)?;
        }
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = std::path::PathBuf::from(temporary);
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&temporary, json)?;
        std::fs::rename(&temporary, path)
    }
}
