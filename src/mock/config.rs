//! The mock engine's configuration and the `clawperf-mock-server` command line that builds it.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use super::MockError;
use super::fault::{FaultKind, FaultSettings};
use super::options::{EngineParams, LatencyModel, MetricsDialect};
use crate::tokenizer::Tokenizer;

/// HBM tier capacity when none is given: 2^20 blocks (16 Mi tokens at 16 tokens a block), so
/// the cache only runs out of room when a test configures a smaller tier.
pub const DEFAULT_HBM_BLOCKS: usize = 1 << 20;
/// Tokens a request generates when it sets no `max_tokens`. vLLM would generate until the
/// context is full; the mock, which never stops early, generates this fixed number instead.
pub const DEFAULT_MAX_TOKENS: u32 = 16;

/// Settings of a mock engine: its model name, latency, tokenizer, prefix cache, faults and
/// metrics format.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// The one model name requests may ask for; others get vLLM's 404 error body. `None`
    /// accepts any `model`.
    pub served_model_name: Option<String>,
    /// Time from a request's arrival to its first generated token, with the fixed latency
    /// model.
    pub ttft: Duration,
    /// Time between successive generated tokens, with the fixed latency model.
    pub tpot: Duration,
    /// Fixed `ttft`/`tpot` schedule (the default) or the continuous-batching engine model.
    pub latency_model: LatencyModel,
    /// Renders and tokenizes prompts, and supplies the generated tokens.
    pub tokenizer: Tokenizer,
    /// Tokens per KV-cache block; only full blocks are cached.
    pub block_size: usize,
    /// HBM tier capacity in blocks.
    pub hbm_blocks: usize,
    /// External (CPU or disk) tier capacity in blocks; 0 disables the tier.
    pub external_blocks: usize,
    /// Whether prompts are looked up in and added to the prefix cache.
    pub prefix_caching: bool,
    /// Seed of the generated text, the fault draws and the step jitter; request `k` of a
    /// server generates the same tokens every run.
    pub seed: u64,
    /// Faults injected from the start; `PUT /admin/faults` replaces them at run time.
    pub faults: FaultSettings,
    /// The engine whose `/metrics` names and format the server imitates.
    pub metrics_dialect: MetricsDialect,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            served_model_name: None,
            ttft: Duration::from_millis(500),
            tpot: Duration::from_millis(10),
            latency_model: LatencyModel::Fixed,
            tokenizer: Tokenizer::builtin(),
            block_size: 16,
            hbm_blocks: DEFAULT_HBM_BLOCKS,
            external_blocks: 0,
            prefix_caching: true,
            seed: 0,
            faults: FaultSettings::default(),
            metrics_dialect: MetricsDialect::Vllm,
        }
    }
}

/// The `--latency-model` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LatencyModelName {
    /// First token `--ttft` after arrival, then one every `--tpot`, whatever the load.
    Fixed,
    /// A continuous-batching scheduler with a KV-cache capacity computes every token's time.
    Engine,
}

/// Command line of `clawperf-mock-server`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "clawperf-mock-server",
    version,
    about = "OpenAI-compatible mock of an LLM serving engine: simulates its prefix cache, \
             latency and Prometheus metrics without a GPU"
)]
pub struct MockServerArgs {
    /// IP address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub host: IpAddr,

    /// TCP port to listen on; 0 picks a free port and logs the bound address.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,

    /// How token times are decided: a fixed schedule, or a simulated continuous-batching
    /// engine whose latency depends on the load and the prefix cache.
    #[arg(long, value_enum, default_value_t = LatencyModelName::Fixed)]
    pub latency_model: LatencyModelName,

    /// Time to first token in milliseconds, counted from the request's arrival (fixed latency
    /// model only) [default: 500].
    #[arg(long, value_name = "MS", value_parser = parse_millis)]
    pub ttft: Option<Duration>,

    /// Time per output token in milliseconds: the gap between successive generated tokens
    /// (fixed latency model only) [default: 10].
    #[arg(long, value_name = "MS", value_parser = parse_millis)]
    pub tpot: Option<Duration>,

    #[command(flatten)]
    pub engine: EngineArgs,

    #[command(flatten)]
    pub faults: FaultArgs,

    /// The engine whose /metrics metric names, labels and number format the server imitates.
    #[arg(long, value_enum, default_value_t = MetricsDialect::Vllm)]
    pub metrics_dialect: MetricsDialect,

    /// Model name that requests must use; without it, any model name is accepted.
    #[arg(long, value_name = "NAME")]
    pub served_model_name: Option<String>,

    /// Tokenizer that counts prompts and supplies the output: a tokenizer.json file or a model
    /// directory that contains one [default: the built-in byte-level tokenizer].
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,

    /// Tokens per KV-cache block.
    #[arg(long, value_name = "TOKENS", default_value_t = 16, value_parser = parse_block_size)]
    pub block_size: usize,

    /// HBM tier capacity in blocks.
    #[arg(long, value_name = "BLOCKS", default_value_t = DEFAULT_HBM_BLOCKS)]
    pub num_gpu_blocks: usize,

    /// External (CPU or disk) tier capacity in blocks; 0 disables the tier.
    #[arg(long, value_name = "BLOCKS", default_value_t = 0)]
    pub external_blocks: usize,

    /// Disable the prefix cache: nothing is cached and every lookup misses.
    #[arg(long)]
    pub no_prefix_caching: bool,

    /// Seed of the generated text, the fault draws and the step jitter.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Options of the engine latency model; each needs `--latency-model engine`.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Engine latency model (with --latency-model engine)")]
pub struct EngineArgs {
    /// Maximum number of requests in one engine step [default: 256].
    #[arg(long, value_name = "N")]
    pub max_num_seqs: Option<usize>,

    /// Maximum number of tokens computed in one step; longer prompts are prefilled in chunks
    /// [default: 8192].
    #[arg(long, value_name = "TOKENS")]
    pub max_num_batched_tokens: Option<usize>,

    /// Prefill time per uncached prompt token, in microseconds [default: 20].
    #[arg(long, value_name = "US")]
    pub prefill_us_per_token: Option<f64>,

    /// Time to load one prompt token from the external tier, in microseconds [default: 2].
    #[arg(long, value_name = "US")]
    pub external_load_us_per_token: Option<f64>,

    /// Fixed duration of one engine step, in microseconds [default: 5000].
    #[arg(long, value_name = "US")]
    pub decode_step_base_us: Option<f64>,

    /// Added duration of one step per request in the batch, in microseconds [default: 100].
    #[arg(long, value_name = "US")]
    pub decode_step_us_per_seq: Option<f64>,

    /// Relative jitter of each step's duration, drawn with --seed; 0.05 means up to 5 percent
    /// either way [default: 0, no jitter].
    #[arg(long, value_name = "FRACTION")]
    pub jitter: Option<f64>,
}

impl EngineArgs {
    /// Returns the option names given on the command line.
    fn given(&self) -> Vec<&'static str> {
        let options = [
            ("--max-num-seqs", self.max_num_seqs.is_some()),
            (
                "--max-num-batched-tokens",
                self.max_num_batched_tokens.is_some(),
            ),
            (
                "--prefill-us-per-token",
                self.prefill_us_per_token.is_some(),
            ),
            (
                "--external-load-us-per-token",
                self.external_load_us_per_token.is_some(),
            ),
            ("--decode-step-base-us", self.decode_step_base_us.is_some()),
            (
                "--decode-step-us-per-seq",
                self.decode_step_us_per_seq.is_some(),
            ),
            ("--jitter", self.jitter.is_some()),
        ];
        options
            .into_iter()
            .filter_map(|(name, given)| given.then_some(name))
            .collect()
    }

    fn to_params(&self) -> EngineParams {
        let defaults = EngineParams::default();
        EngineParams {
            max_num_seqs: self.max_num_seqs.unwrap_or(defaults.max_num_seqs),
            max_num_batched_tokens: self
                .max_num_batched_tokens
                .unwrap_or(defaults.max_num_batched_tokens),
            prefill_us_per_token: self
                .prefill_us_per_token
                .unwrap_or(defaults.prefill_us_per_token),
            external_load_us_per_token: self
                .external_load_us_per_token
                .unwrap_or(defaults.external_load_us_per_token),
            decode_step_base_us: self
                .decode_step_base_us
                .unwrap_or(defaults.decode_step_base_us),
            decode_step_us_per_seq: self
                .decode_step_us_per_seq
                .unwrap_or(defaults.decode_step_us_per_seq),
            jitter: self.jitter.unwrap_or(defaults.jitter),
        }
    }
}

/// Fault injection options.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Fault injection")]
pub struct FaultArgs {
    /// Fault to inject into a fraction of the requests.
    #[arg(long, value_enum, value_name = "KIND")]
    pub fault: Option<FaultKind>,

    /// Fraction of requests that get the --fault, from 0 to 1.
    #[arg(long, value_name = "FRACTION", default_value_t = 1.0)]
    pub fault_rate: f64,

    /// How long the stall fault sends nothing, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub fault_stall_s: f64,

    /// Retry-After value of the rate-limited fault, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 1)]
    pub fault_retry_after_s: u32,
}

impl FaultArgs {
    fn to_settings(&self) -> FaultSettings {
        FaultSettings {
            kind: self.fault,
            rate: self.fault_rate,
            stall_s: self.fault_stall_s,
            retry_after_s: self.fault_retry_after_s,
        }
    }
}

impl MockServerArgs {
    /// Builds the engine configuration, loading the tokenizer from `--tokenizer` when given.
    /// Options of one latency model given with the other are an error rather than ignored.
    pub fn to_config(&self) -> Result<MockConfig, MockError> {
        let defaults = MockConfig::default();
        let latency_model = match self.latency_model {
            LatencyModelName::Fixed => {
                let engine_options = self.engine.given();
                if !engine_options.is_empty() {
                    return Err(MockError::InvalidEngine(format!(
                        "{} set without --latency-model engine; add it, or drop the option",
                        engine_options.join(", ")
                    )));
                }
                LatencyModel::Fixed
            }
            LatencyModelName::Engine => {
                if self.ttft.is_some() || self.tpot.is_some() {
                    return Err(MockError::InvalidEngine(
                        "--ttft and --tpot set the fixed latency model, but --latency-model is \
                         engine; drop them, or use --latency-model fixed"
                            .to_owned(),
                    ));
                }
                LatencyModel::Engine(self.engine.to_params())
            }
        };
        let tokenizer = match &self.tokenizer {
            Some(path) => Tokenizer::from_path(path).map_err(|source| MockError::Tokenizer {
                path: path.clone(),
                source,
            })?,
            None => Tokenizer::builtin(),
        };
        Ok(MockConfig {
            served_model_name: self.served_model_name.clone(),
            ttft: self.ttft.unwrap_or(defaults.ttft),
            tpot: self.tpot.unwrap_or(defaults.tpot),
            latency_model,
            tokenizer,
            block_size: self.block_size,
            hbm_blocks: self.num_gpu_blocks,
            external_blocks: self.external_blocks,
            prefix_caching: !self.no_prefix_caching,
            seed: self.seed,
            faults: self.faults.to_settings(),
            metrics_dialect: self.metrics_dialect,
        })
    }
}

/// Largest latency accepted, one day in milliseconds. It keeps token deadlines far from the
/// overflow of `Instant` arithmetic.
const MAX_MILLIS: f64 = 86_400_000.0;

/// Parses a number of milliseconds from 0 to one day, such as `500` or `12.5`. The error
/// message states what was expected, and the caller adds the value and where it came from.
pub(crate) fn parse_millis(text: &str) -> Result<Duration, String> {
    let millis: f64 = text
        .trim()
        .parse()
        .map_err(|_| "expected a number of milliseconds".to_owned())?;
    if !(0.0..=MAX_MILLIS).contains(&millis) {
        return Err(format!(
            "expected a number of milliseconds from 0 to {MAX_MILLIS} (one day)"
        ));
    }
    Ok(Duration::from_secs_f64(millis / 1000.0))
}

fn parse_block_size(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(size) if size > 0 => Ok(size),
        _ => Err("expected a positive number of tokens".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_accept_fractions() {
        assert_eq!(parse_millis("12.5"), Ok(Duration::from_micros(12_500)));
    }

    #[test]
    fn millis_reject_negative() {
        assert!(parse_millis("-1").is_err());
    }

    #[test]
    fn millis_reject_more_than_a_day() {
        assert!(parse_millis("86400000").is_ok());
        assert!(parse_millis("86400001").is_err());
    }

    #[test]
    fn millis_reject_non_numbers() {
        assert!(parse_millis("fast").is_err());
        assert!(parse_millis("NaN").is_err());
        assert!(parse_millis("inf").is_err());
    }

    #[test]
    fn block_size_rejects_zero() {
        assert!(parse_block_size("0").is_err());
    }

    #[test]
    fn args_defaults_match_config_defaults() {
        let config = MockServerArgs::parse_from(["clawperf-mock-server"])
            .to_config()
            .unwrap();
        let defaults = MockConfig::default();
        assert_eq!(config.ttft, defaults.ttft);
        assert_eq!(config.tpot, defaults.tpot);
        assert_eq!(config.block_size, defaults.block_size);
        assert_eq!(config.hbm_blocks, defaults.hbm_blocks);
        assert_eq!(config.external_blocks, defaults.external_blocks);
        assert_eq!(config.prefix_caching, defaults.prefix_caching);
        assert_eq!(config.seed, defaults.seed);
        assert_eq!(config.latency_model, LatencyModel::Fixed);
        assert_eq!(config.faults, defaults.faults);
        assert_eq!(config.metrics_dialect, defaults.metrics_dialect);
    }

    #[test]
    fn engine_option_requires_engine_model() {
        let args = MockServerArgs::parse_from(["clawperf-mock-server", "--max-num-seqs", "8"]);
        let err = args.to_config().unwrap_err().to_string();
        assert!(err.contains("--max-num-seqs"), "{err}");
    }

    #[test]
    fn engine_model_rejects_fixed_latency() {
        let args = MockServerArgs::parse_from([
            "clawperf-mock-server",
            "--latency-model",
            "engine",
            "--ttft",
            "100",
        ]);
        assert!(args.to_config().is_err());
    }

    #[test]
    fn engine_options_fill_defaults() {
        let config = MockServerArgs::parse_from([
            "clawperf-mock-server",
            "--latency-model",
            "engine",
            "--max-num-seqs",
            "8",
        ])
        .to_config()
        .unwrap();
        let LatencyModel::Engine(params) = config.latency_model else {
            panic!("expected the engine model, got {:?}", config.latency_model);
        };
        assert_eq!(params.max_num_seqs, 8);
        assert_eq!(
            params.max_num_batched_tokens,
            EngineParams::default().max_num_batched_tokens
        );
    }
}
