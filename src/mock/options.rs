//! Choices of the mock engine beyond its cache: how latency is produced and how `/metrics` is
//! written.

use std::fmt;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// How the mock decides when each token of a response is sent.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum LatencyModel {
    /// Token `i` is due `ttft + i * tpot` after the request arrived, whatever the load.
    #[default]
    Fixed,
    /// A continuous-batching scheduler computes every token's time from the batch it runs in.
    Engine(EngineParams),
}

/// Parameters of the simulated continuous-batching engine.
///
/// One engine step serves up to `max_num_seqs` requests and `max_num_batched_tokens` tokens. It
/// takes `decode_step_base_us + decode_step_us_per_seq * requests in the step`, plus
/// `prefill_us_per_token` for every prompt token it computes and `external_load_us_per_token`
/// for every prompt token it loads from the external tier. The defaults are estimates for an
/// 8B-parameter model on one H100-class GPU, not measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineParams {
    /// Maximum number of requests in one step (vLLM's `--max-num-seqs`).
    pub max_num_seqs: usize,
    /// Maximum number of tokens computed in one step, decode tokens included (vLLM's
    /// `--max-num-batched-tokens`); longer prompts are prefilled in chunks.
    pub max_num_batched_tokens: usize,
    /// Prefill time of one uncached prompt token, in microseconds.
    pub prefill_us_per_token: f64,
    /// Time to load one prompt token's KV from the external tier, in microseconds.
    pub external_load_us_per_token: f64,
    /// Fixed cost of one engine step, in microseconds.
    pub decode_step_base_us: f64,
    /// Cost of one step per request in the batch, in microseconds.
    pub decode_step_us_per_seq: f64,
    /// Relative jitter of a step's duration: each step is scaled by a factor drawn uniformly
    /// from `[1 - jitter, 1 + jitter]` with the server's seed. 0 turns jitter off.
    pub jitter: f64,
}

impl Default for EngineParams {
    fn default() -> Self {
        Self {
            max_num_seqs: 256,
            max_num_batched_tokens: 8192,
            prefill_us_per_token: 20.0,
            external_load_us_per_token: 2.0,
            decode_step_base_us: 5000.0,
            decode_step_us_per_seq: 100.0,
            jitter: 0.0,
        }
    }
}

impl EngineParams {
    /// Checks that every step can make progress and every time is a finite, non-negative
    /// number of microseconds. Returns a message naming the option and the value.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_num_seqs == 0 {
            return Err("invalid --max-num-seqs 0: at least 1 request must fit a step".into());
        }
        if self.max_num_batched_tokens == 0 {
            return Err(
                "invalid --max-num-batched-tokens 0: a step computes at least 1 token".into(),
            );
        }
        let times = [
            ("--prefill-us-per-token", self.prefill_us_per_token),
            (
                "--external-load-us-per-token",
                self.external_load_us_per_token,
            ),
            ("--decode-step-base-us", self.decode_step_base_us),
            ("--decode-step-us-per-seq", self.decode_step_us_per_seq),
        ];
        for (option, value) in times {
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!(
                    "invalid {option} {value}: expected a non-negative number of microseconds"
                ));
            }
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(format!(
                "invalid --jitter {}: expected a fraction from 0 up to, but excluding, 1",
                self.jitter
            ));
        }
        Ok(())
    }

    /// Returns the duration in microseconds of a step without jitter that serves `batch`
    /// requests, computes `prefill_tokens` prompt tokens and loads `external_tokens`.
    pub fn step_us(&self, batch: usize, prefill_tokens: usize, external_tokens: usize) -> f64 {
        self.decode_step_base_us
            + self.decode_step_us_per_seq * batch as f64
            + self.prefill_us_per_token * prefill_tokens as f64
            + self.external_load_us_per_token * external_tokens as f64
    }
}

/// The serving engine whose `/metrics` format the mock imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsDialect {
    /// vLLM V1: `vllm:` names with `engine` and `model_name` labels, `_created` companions.
    #[default]
    Vllm,
    /// SGLang: `sglang:` names with a `model_name` label, no `_created` series.
    Sglang,
    /// MindIE: unprefixed names, integer values, prometheus-cpp ordering.
    Mindie,
}

impl fmt::Display for MetricsDialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MetricsDialect::Vllm => "vllm",
            MetricsDialect::Sglang => "sglang",
            MetricsDialect::Mindie => "mindie",
        })
    }
}
