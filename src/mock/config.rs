//! The mock engine's configuration and the `clawperf-mock-server` command line that builds it.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::MockError;
use crate::tokenizer::Tokenizer;

/// HBM tier capacity when none is given: 2^20 blocks (16 Mi tokens at 16 tokens a block), so
/// the cache only runs out of room when a test configures a smaller tier.
pub const DEFAULT_HBM_BLOCKS: usize = 1 << 20;
/// Tokens a request generates when it sets no `max_tokens`. vLLM would generate until the
/// context is full; the mock, which never stops early, generates this fixed number instead.
pub const DEFAULT_MAX_TOKENS: u32 = 16;

/// Settings of a mock engine: its model name, latency, tokenizer and prefix cache.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// The one model name requests may ask for; others get vLLM's 404 error body. `None`
    /// accepts any `model`.
    pub served_model_name: Option<String>,
    /// Time from a request's arrival to its first generated token.
    pub ttft: Duration,
    /// Time between successive generated tokens.
    pub tpot: Duration,
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
    /// Seed of the generated text; request `k` of a server generates the same tokens every run.
    pub seed: u64,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            served_model_name: None,
            ttft: Duration::from_millis(500),
            tpot: Duration::from_millis(10),
            tokenizer: Tokenizer::builtin(),
            block_size: 16,
            hbm_blocks: DEFAULT_HBM_BLOCKS,
            external_blocks: 0,
            prefix_caching: true,
            seed: 0,
        }
    }
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

    /// Time to first token in milliseconds, counted from the request's arrival.
    #[arg(long, value_name = "MS", default_value = "500", value_parser = parse_millis)]
    pub ttft: Duration,

    /// Time per output token in milliseconds: the gap between successive generated tokens.
    #[arg(long, value_name = "MS", default_value = "10", value_parser = parse_millis)]
    pub tpot: Duration,

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

    /// Seed of the generated text.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl MockServerArgs {
    /// Builds the engine configuration, loading the tokenizer from `--tokenizer` when given.
    pub fn to_config(&self) -> Result<MockConfig, MockError> {
        let tokenizer = match &self.tokenizer {
            Some(path) => Tokenizer::from_path(path).map_err(|source| MockError::Tokenizer {
                path: path.clone(),
                source,
            })?,
            None => Tokenizer::builtin(),
        };
        Ok(MockConfig {
            served_model_name: self.served_model_name.clone(),
            ttft: self.ttft,
            tpot: self.tpot,
            tokenizer,
            block_size: self.block_size,
            hbm_blocks: self.num_gpu_blocks,
            external_blocks: self.external_blocks,
            prefix_caching: !self.no_prefix_caching,
            seed: self.seed,
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
    }
}
