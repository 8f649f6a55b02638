//! Serving-engine backends and the map from each engine's metric names to a [`MetricsSnapshot`].
//!
//! Every value is the sum over all series of one exact metric name (all `engine`, `model_name`
//! or `tp_rank` labels), except the fractions `kv_cache_usage` and `cache_hit_rate_gauge`, which
//! are the mean over series. Where a row lists several names, the first name present in the
//! exposition is used and the others are ignored.
//!
//! | field | vLLM | SGLang (`sglang:` or `sglang_`) | MindIE |
//! |---|---|---|---|
//! | `prefix_cache_queries_tokens` | `vllm:prefix_cache_queries_total` | `prompt_tokens_total`, only when `cached_tokens_total` exists | - |
//! | `prefix_cache_hits_tokens` | `vllm:prefix_cache_hits_total` | `cached_tokens_total` | - |
//! | `external_prefix_cache_queries_tokens` | `vllm:external_prefix_cache_queries_total`, `external_prefix_cache_queries_total` | - | - |
//! | `external_prefix_cache_hits_tokens` | `vllm:external_prefix_cache_hits_total`, `external_prefix_cache_hits_total` | - | - |
//! | `kv_cache_usage` | `vllm:kv_cache_usage_perc`, `vllm:gpu_cache_usage_perc` | `token_usage` | `npu_cache_usage_perc` |
//! | `num_requests_running` | `vllm:num_requests_running` | `num_running_reqs` | `num_requests_running` |
//! | `num_requests_waiting` | `vllm:num_requests_waiting` | `num_queue_reqs` | `num_requests_waiting` |
//! | `prompt_tokens_total` | `vllm:prompt_tokens_total` | `prompt_tokens_total` | `prompt_tokens_total` |
//! | `generation_tokens_total` | `vllm:generation_tokens_total` | `generation_tokens_total` | `generation_tokens_total` |
//! | `cache_hit_rate_gauge` | `vllm:gpu_prefix_cache_hit_rate` (V0 engine) | `cache_hit_rate` | `npu_prefix_cache_hit_rate` |
//!
//! Notes on the map:
//! - vLLM's V1 engine (0.8 and later) counts prefix-cache queries and hits in tokens. The V0
//!   engine has no token counters, only the block-level `vllm:gpu_prefix_cache_hit_rate` gauge,
//!   which it sets to -1 when prefix caching is disabled. A negative gauge becomes `None`.
//! - The external-tier counters (a KV connector such as LMCache) appeared around vLLM 0.11.1.
//!   Some builds and mock servers export them without the `vllm:` prefix.
//! - The deprecated `vllm:gpu_prefix_cache_queries_total` / `_hits_total` are not read, because
//!   early 0.8 builds counted blocks, not tokens, under those names.
//! - SGLang's `cache_hit_rate` gauge describes only the latest prefill batch and drops to 0 when
//!   idle, so the token counters are preferred. SGLang increments `cached_tokens_total` and
//!   `prompt_tokens_total` when a request finishes, so both cover the same requests. SGLang
//!   builds from 2024 have no `cached_tokens_total`, and then both prefix-cache fields are `None`.
//! - MindIE exports no token counters for its prefix cache, only the block-level
//!   `npu_prefix_cache_hit_rate` gauge.
//!
//! The gauges are informational: the hit rate of a run comes from the token counters
//! (see [`crate::prom::PrefixCacheDelta`]).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::exposition::Exposition;

/// The serving engine behind a metrics endpoint, which decides the metric names to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Vllm,
    Sglang,
    Mindie,
}

impl Backend {
    /// Every backend, in the order shown in help and error messages.
    pub const ALL: [Backend; 3] = [Backend::Vllm, Backend::Sglang, Backend::Mindie];

    /// Returns the lowercase name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Vllm => "vllm",
            Backend::Sglang => "sglang",
            Backend::Mindie => "mindie",
        }
    }

    /// Reads this backend's metrics from `exposition` into a snapshot taken `elapsed` after the
    /// run started, at wall-clock time `taken_at`.
    pub fn snapshot(
        self,
        exposition: &Exposition,
        elapsed: Duration,
        taken_at: SystemTime,
    ) -> MetricsSnapshot {
        let metrics = match self {
            Backend::Vllm => read_vllm(exposition),
            Backend::Sglang => read_sglang(exposition),
            Backend::Mindie => read_mindie(exposition),
        };
        // A system clock set before 1970 gives timestamp 0 instead of failing the scrape.
        let timestamp = taken_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        MetricsSnapshot {
            elapsed_s: elapsed.as_secs_f64(),
            timestamp: timestamp.as_secs_f64(),
            ..metrics
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for Backend {
    type Err = UnknownBackendError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Backend::ALL
            .into_iter()
            .find(|backend| backend.as_str() == name)
            .ok_or_else(|| UnknownBackendError {
                name: name.to_owned(),
            })
    }
}

/// The error for a backend name that is not `vllm`, `sglang` or `mindie`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend `{name}`: expected vllm|sglang|mindie")]
pub struct UnknownBackendError {
    pub name: String,
}

/// The server metrics of one scrape, in engine-independent terms. A field is `None` when the
/// engine does not export the metric. Token fields are cumulative counters since server start.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// Seconds from the start of the run to the start of this scrape.
    pub elapsed_s: f64,
    /// Unix time in seconds at the start of this scrape.
    pub timestamp: f64,
    /// Prompt tokens looked up in the engine's own (device) prefix cache.
    pub prefix_cache_queries_tokens: Option<f64>,
    /// Prompt tokens served from the engine's own prefix cache.
    pub prefix_cache_hits_tokens: Option<f64>,
    /// Prompt tokens looked up in the external tier (KV connector).
    pub external_prefix_cache_queries_tokens: Option<f64>,
    /// Prompt tokens served from the external tier.
    pub external_prefix_cache_hits_tokens: Option<f64>,
    /// Fraction of the KV cache in use, from 0 to 1.
    pub kv_cache_usage: Option<f64>,
    pub num_requests_running: Option<f64>,
    pub num_requests_waiting: Option<f64>,
    pub prompt_tokens_total: Option<f64>,
    pub generation_tokens_total: Option<f64>,
    /// The engine's own prefix-cache hit-rate gauge (SGLang, MindIE, vLLM V0), as exported.
    /// Informational only, because each engine defines it differently.
    pub cache_hit_rate_gauge: Option<f64>,
}

impl MetricsSnapshot {
    /// Returns whether any metric field is set, ignoring `elapsed_s` and `timestamp`.
    pub fn has_any_metric(&self) -> bool {
        [
            self.prefix_cache_queries_tokens,
            self.prefix_cache_hits_tokens,
            self.external_prefix_cache_queries_tokens,
            self.external_prefix_cache_hits_tokens,
            self.kv_cache_usage,
            self.num_requests_running,
            self.num_requests_waiting,
            self.prompt_tokens_total,
            self.generation_tokens_total,
            self.cache_hit_rate_gauge,
        ]
        .iter()
        .any(Option::is_some)
    }
}

fn read_vllm(exposition: &Exposition) -> MetricsSnapshot {
    MetricsSnapshot {
        prefix_cache_queries_tokens: exposition.sum("vllm:prefix_cache_queries_total"),
        prefix_cache_hits_tokens: exposition.sum("vllm:prefix_cache_hits_total"),
        external_prefix_cache_queries_tokens: first_sum(
            exposition,
            &[
                "vllm:external_prefix_cache_queries_total",
                "external_prefix_cache_queries_total",
            ],
        ),
        external_prefix_cache_hits_tokens: first_sum(
            exposition,
            &[
                "vllm:external_prefix_cache_hits_total",
                "external_prefix_cache_hits_total",
            ],
        ),
        kv_cache_usage: first_mean(
            exposition,
            &["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"],
        ),
        num_requests_running: exposition.sum("vllm:num_requests_running"),
        num_requests_waiting: exposition.sum("vllm:num_requests_waiting"),
        prompt_tokens_total: exposition.sum("vllm:prompt_tokens_total"),
        generation_tokens_total: exposition.sum("vllm:generation_tokens_total"),
        cache_hit_rate_gauge: exposition
            .mean("vllm:gpu_prefix_cache_hit_rate")
            .filter(|rate| *rate >= 0.0),
        ..MetricsSnapshot::default()
    }
}

fn read_sglang(exposition: &Exposition) -> MetricsSnapshot {
    // NOTE: SGLang 2025+ labels series with `tp_rank`. Should a build export a series once per
    // tensor-parallel rank, the sums below count it once per rank. The token deltas would then be
    // multiplied as well, but the hit rate, a ratio of two such sums, would not.
    let prompt_tokens = first_sum(
        exposition,
        &["sglang:prompt_tokens_total", "sglang_prompt_tokens_total"],
    );
    let cached_tokens = first_sum(
        exposition,
        &["sglang:cached_tokens_total", "sglang_cached_tokens_total"],
    );
    MetricsSnapshot {
        prefix_cache_queries_tokens: cached_tokens.and(prompt_tokens),
        prefix_cache_hits_tokens: cached_tokens,
        kv_cache_usage: first_mean(exposition, &["sglang:token_usage", "sglang_token_usage"]),
        num_requests_running: first_sum(
            exposition,
            &["sglang:num_running_reqs", "sglang_num_running_reqs"],
        ),
        num_requests_waiting: first_sum(
            exposition,
            &["sglang:num_queue_reqs", "sglang_num_queue_reqs"],
        ),
        prompt_tokens_total: prompt_tokens,
        generation_tokens_total: first_sum(
            exposition,
            &[
                "sglang:generation_tokens_total",
                "sglang_generation_tokens_total",
            ],
        ),
        cache_hit_rate_gauge: first_mean(
            exposition,
            &["sglang:cache_hit_rate", "sglang_cache_hit_rate"],
        ),
        ..MetricsSnapshot::default()
    }
}

fn read_mindie(exposition: &Exposition) -> MetricsSnapshot {
    MetricsSnapshot {
        kv_cache_usage: exposition.mean("npu_cache_usage_perc"),
        num_requests_running: exposition.sum("num_requests_running"),
        num_requests_waiting: exposition.sum("num_requests_waiting"),
        prompt_tokens_total: exposition.sum("prompt_tokens_total"),
        generation_tokens_total: exposition.sum("generation_tokens_total"),
        cache_hit_rate_gauge: exposition.mean("npu_prefix_cache_hit_rate"),
        ..MetricsSnapshot::default()
    }
}

/// Sums the first of `names` that has a sample in `exposition`.
fn first_sum(exposition: &Exposition, names: &[&str]) -> Option<f64> {
    names.iter().find_map(|name| exposition.sum(name))
}

/// Averages the first of `names` that has a sample in `exposition`.
fn first_mean(exposition: &Exposition, names: &[&str]) -> Option<f64> {
    names.iter().find_map(|name| exposition.mean(name))
}
