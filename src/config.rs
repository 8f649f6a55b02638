//! Benchmark options: the command-line arguments and their validation into a [`RunConfig`].
//!
//! Every check runs before the first request, and each error names the option, the rejected
//! value and what is accepted.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args};
use url::Url;

use crate::client::{self, TlsOptions};
use crate::prom::Backend;
use crate::tokenizer::{Tokenizer, TokenizerError};
use crate::workload::{Arrival, ArrivalParseError, ConversationShape};

/// The `--endpoint` value that starts the embedded mock server.
pub const MOCK_ENDPOINT: &str = "mock";

/// Options of a benchmark run. Names and defaults match the original ClawPerf.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// OpenAI-compatible endpoint: the /v1 base URL, the full /v1/chat/completions URL, or
    /// "mock" to start the embedded mock server on an ephemeral 127.0.0.1 port
    #[arg(long)]
    pub endpoint: String,

    /// Model name sent in every request
    #[arg(long)]
    pub model: String,

    /// API key sent as "Authorization: Bearer <key>"
    #[arg(long, env = "CLAWPERF_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// tokenizer.json file, or a model directory with tokenizer.json and tokenizer_config.json
    /// [default: --model when it is a local path, else the built-in byte-level tokenizer]
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,

    /// Number of concurrent users, each with its own conversation
    #[arg(long, default_value_t = 1)]
    pub num_users: usize,

    /// When users start: burst (all at once), steady:<seconds> (one every N seconds) or
    /// poisson:<rate> (random arrivals, users per second)
    #[arg(long, default_value = "burst")]
    pub user_arrival: String,

    /// Tokens of the system prefix shared by all users
    #[arg(long, default_value_t = 15000)]
    pub system_prefix_tokens: usize,

    /// "random" for generated content, or a text file whose first --system-prefix-tokens
    /// tokens become the system prefix
    #[arg(long, default_value = "random")]
    pub system_prefix_source: String,

    /// Tokens of each user's own prefix
    #[arg(long, default_value_t = 5000)]
    pub user_prefix_tokens: usize,

    /// Tokens of new input per turn
    #[arg(long, default_value_t = 5000)]
    pub input_tokens_per_turn: usize,

    /// Output tokens requested per turn (max_tokens)
    #[arg(long, default_value_t = 1000)]
    pub output_tokens_per_turn: usize,

    /// Context limit in tokens: a request whose prompt plus output tokens reach it triggers
    /// compaction
    #[arg(long, default_value_t = 128000)]
    pub max_context_tokens: usize,

    /// Tokens added to the user prefix at each compaction
    #[arg(long, default_value_t = 5000)]
    pub compaction_prefix_increment: usize,

    /// Turns per user
    #[arg(long, default_value_t = 100)]
    pub max_turns: usize,

    /// Ask the server to ignore the end-of-sequence token so that exactly max_tokens are
    /// generated (true or false)
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub ignore_eos: bool,

    /// Timeout of one request, from sending it to the end of its stream, in seconds
    #[arg(long, default_value_t = 600.0, allow_negative_numbers = true)]
    pub request_timeout: f64,

    /// Max seconds without data from the server within a request: until the response headers,
    /// then between body reads. The first wait includes prefill on many servers, so keep it
    /// above the slowest expected TTFT [default: off, only --request-timeout applies]
    #[arg(long, allow_negative_numbers = true)]
    pub idle_timeout: Option<f64>,

    /// Stop a user after this many failed turns in a row [default: never]
    #[arg(long)]
    pub max_consecutive_failures: Option<usize>,

    /// JSON-lines file to which every turn is appended as it finishes, so a killed run keeps
    /// its data [default: --output with the extension turns.jsonl]
    #[arg(long)]
    pub journal: Option<PathBuf>,

    /// Seconds that turns in flight get to finish after Ctrl-C or SIGTERM before they are
    /// aborted
    #[arg(long, default_value_t = 5.0, allow_negative_numbers = true)]
    pub interrupt_grace: f64,

    /// Prometheus /metrics URL of the server, polled during the run
    /// [default with --endpoint mock: the mock's /metrics]
    #[arg(long)]
    pub metrics_endpoint: Option<String>,

    /// Seconds between two scrapes of --metrics-endpoint
    #[arg(long, default_value_t = 5.0, allow_negative_numbers = true)]
    pub metrics_interval: f64,

    /// Metric names to read from --metrics-endpoint: vllm, sglang or mindie
    #[arg(long, default_value = "vllm")]
    pub backend: String,

    /// Path of the result JSON
    #[arg(long, default_value = "results.json")]
    pub output: PathBuf,

    /// Log every turn's measurements
    #[arg(long, short = 'v')]
    pub verbose: bool,

    /// Hide the progress display (it is also hidden when stderr is not a terminal)
    #[arg(long, short = 'q')]
    pub quiet: bool,

    /// PEM file with a CA certificate to trust for HTTPS endpoints (e.g. a private CA)
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,

    /// Accept any TLS certificate (for self-signed test servers only)
    #[arg(long)]
    pub insecure: bool,

    /// Skip the pre-flight GET /v1/models that checks endpoint, API key and model
    #[arg(long)]
    pub no_preflight: bool,

    /// Seed of the random content and arrivals [default: random, recorded in the result]
    #[arg(long)]
    pub seed: Option<u64>,

    /// TTFT of the embedded mock server in ms (only with --endpoint mock) [default: 500]
    #[arg(long, allow_negative_numbers = true)]
    pub mock_ttft: Option<f64>,

    /// Time per output token of the embedded mock server in ms (only with --endpoint mock)
    /// [default: 10]
    #[arg(long, allow_negative_numbers = true)]
    pub mock_tpot: Option<f64>,
}

/// Destination of the run's traffic.
#[derive(Debug, Clone)]
pub enum Target {
    /// The embedded mock server, started for the run.
    Mock { ttft: Duration, tpot: Duration },
    /// A remote server's chat-completions URL.
    Remote { chat_url: Url },
}

/// Source of the shared system prefix.
#[derive(Debug, Clone)]
pub enum SystemPrefixSource {
    Random,
    /// The file's path and text.
    File {
        path: PathBuf,
        text: String,
    },
}

/// A validated benchmark configuration.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub target: Target,
    pub endpoint: String,
    pub model: String,
    pub api_key: Option<String>,
    pub tokenizer: Tokenizer,
    /// True when no tokenizer was found and the built-in one is used.
    pub tokenizer_is_builtin: bool,
    pub num_users: usize,
    pub arrival: Arrival,
    pub system_prefix_tokens: usize,
    pub system_prefix_source: SystemPrefixSource,
    pub shape: ConversationShape,
    pub max_turns: usize,
    pub ignore_eos: bool,
    pub request_timeout: Duration,
    /// Max time without a byte from the server within a request; `None` is no limit.
    pub idle_timeout: Option<Duration>,
    /// Failed turns in a row after which a user stops; `None` never stops it.
    pub max_consecutive_failures: Option<usize>,
    /// The turn journal's path; `None` writes no journal. The CLI fills in the default.
    pub journal: Option<PathBuf>,
    /// Time turns in flight get to finish after a stop before they are aborted.
    pub interrupt_grace: Duration,
    /// The metrics URL; with the mock target, `None` here means "the mock's own".
    pub metrics_endpoint: Option<Url>,
    pub metrics_interval: Duration,
    pub backend: Backend,
    pub tls: TlsOptions,
    /// Whether to check endpoint, key and model with `GET /v1/models` before the run.
    pub preflight: bool,
    pub seed: u64,
    pub output: PathBuf,
    pub verbose: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid --{option} value {value}: {expected}")]
    Invalid {
        option: &'static str,
        value: String,
        expected: String,
    },
    #[error(transparent)]
    Arrival(#[from] ArrivalParseError),
    #[error("invalid --tokenizer")]
    Tokenizer(#[source] TokenizerError),
    #[error("failed to read --system-prefix-source file {path}")]
    SystemPrefixFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn invalid(option: &'static str, value: impl ToString, expected: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        option,
        value: value.to_string(),
        expected: expected.into(),
    }
}

impl BenchArgs {
    /// Checks every option and loads the tokenizer. Nothing is sent to the endpoint.
    pub fn validate(self) -> Result<RunConfig, ConfigError> {
        let at_least_one = |option, value: usize| {
            if value == 0 {
                Err(invalid(option, value, "expected an integer >= 1"))
            } else {
                Ok(())
            }
        };
        at_least_one("num-users", self.num_users)?;
        at_least_one("max-turns", self.max_turns)?;
        at_least_one("output-tokens-per-turn", self.output_tokens_per_turn)?;
        at_least_one("max-context-tokens", self.max_context_tokens)?;
        let request_timeout = positive_seconds("request-timeout", self.request_timeout)?;
        let metrics_interval = positive_seconds("metrics-interval", self.metrics_interval)?;
        let idle_timeout = self
            .idle_timeout
            .map(|seconds| positive_seconds("idle-timeout", seconds))
            .transpose()?;
        if let Some(limit) = self.max_consecutive_failures {
            at_least_one("max-consecutive-failures", limit)?;
        }
        let interrupt_grace = non_negative_seconds("interrupt-grace", self.interrupt_grace)?;
        let arrival: Arrival = self.user_arrival.parse()?;
        let backend: Backend = self
            .backend
            .parse()
            .map_err(|_| invalid("backend", &self.backend, "expected vllm, sglang or mindie"))?;

        let is_mock = self.endpoint == MOCK_ENDPOINT;
        let target = if is_mock {
            Target::Mock {
                ttft: non_negative_ms("mock-ttft", self.mock_ttft.unwrap_or(500.0))?,
                tpot: non_negative_ms("mock-tpot", self.mock_tpot.unwrap_or(10.0))?,
            }
        } else {
            let mock_options = [("mock-ttft", self.mock_ttft), ("mock-tpot", self.mock_tpot)];
            if let Some((option, Some(value))) = mock_options.into_iter().find(|(_, v)| v.is_some())
            {
                return Err(invalid(
                    option,
                    value,
                    "it sets the embedded mock server, so it needs --endpoint mock",
                ));
            }
            let chat_url = client::chat_completions_url(&self.endpoint).map_err(|err| {
                invalid(
                    "endpoint",
                    &self.endpoint,
                    format!("{err}; or pass \"mock\" for the embedded mock server"),
                )
            })?;
            Target::Remote { chat_url }
        };
        let metrics_endpoint = self
            .metrics_endpoint
            .as_deref()
            .map(parse_metrics_url)
            .transpose()?;

        if let Some(path) = &self.ca_cert
            && !path.is_file()
        {
            return Err(invalid(
                "ca-cert",
                path.display(),
                "expected an existing PEM file",
            ));
        }
        let system_prefix_source = match self.system_prefix_source.as_str() {
            "random" => SystemPrefixSource::Random,
            path => {
                let path = PathBuf::from(path);
                let text = std::fs::read_to_string(&path).map_err(|source| {
                    ConfigError::SystemPrefixFile {
                        path: path.clone(),
                        source,
                    }
                })?;
                SystemPrefixSource::File { path, text }
            }
        };

        let resolved = Tokenizer::resolve(self.tokenizer.as_deref(), &self.model)
            .map_err(ConfigError::Tokenizer)?;
        let tokenizer_is_builtin = resolved.is_none();
        let tokenizer = resolved.unwrap_or_else(Tokenizer::builtin);

        Ok(RunConfig {
            target,
            endpoint: self.endpoint,
            model: self.model,
            api_key: self.api_key,
            tokenizer,
            tokenizer_is_builtin,
            num_users: self.num_users,
            arrival,
            system_prefix_tokens: self.system_prefix_tokens,
            system_prefix_source,
            shape: ConversationShape {
                user_prefix_tokens: self.user_prefix_tokens,
                input_tokens_per_turn: self.input_tokens_per_turn,
                output_tokens_per_turn: self.output_tokens_per_turn,
                max_context_tokens: self.max_context_tokens,
                compaction_prefix_increment: self.compaction_prefix_increment,
            },
            max_turns: self.max_turns,
            ignore_eos: self.ignore_eos,
            request_timeout,
            idle_timeout,
            max_consecutive_failures: self.max_consecutive_failures,
            journal: self.journal,
            interrupt_grace,
            metrics_endpoint,
            metrics_interval,
            backend,
            tls: TlsOptions {
                ca_cert: self.ca_cert,
                insecure: self.insecure,
            },
            preflight: !self.no_preflight,
            // A random seed keeps to 53 bits so that it survives JSON tools (jq, JavaScript)
            // that read numbers as doubles, and can be passed back to --seed.
            seed: self.seed.unwrap_or_else(|| rand::random::<u64>() >> 11),
            output: self.output,
            verbose: self.verbose,
        })
    }
}

fn positive_seconds(option: &'static str, seconds: f64) -> Result<Duration, ConfigError> {
    if seconds.is_finite() && seconds > 0.0 {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        Err(invalid(option, seconds, "expected a number of seconds > 0"))
    }
}

fn non_negative_seconds(option: &'static str, seconds: f64) -> Result<Duration, ConfigError> {
    if seconds.is_finite() && seconds >= 0.0 {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        Err(invalid(
            option,
            seconds,
            "expected a number of seconds >= 0",
        ))
    }
}

fn non_negative_ms(option: &'static str, ms: f64) -> Result<Duration, ConfigError> {
    if ms.is_finite() && ms >= 0.0 {
        Ok(Duration::from_secs_f64(ms / 1000.0))
    } else {
        Err(invalid(
            option,
            ms,
            "expected a number of milliseconds >= 0",
        ))
    }
}

fn parse_metrics_url(value: &str) -> Result<Url, ConfigError> {
    match Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(url),
        _ => Err(invalid(
            "metrics-endpoint",
            value,
            "expected an http(s) URL such as http://127.0.0.1:8000/metrics",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_chain::error_chain;
    use clap::Parser;

    #[derive(Parser)]
    struct TestCli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn validate(extra: &[&str]) -> Result<RunConfig, ConfigError> {
        let mut argv = vec!["clawperf", "--endpoint", "mock", "--model", "m"];
        argv.extend_from_slice(extra);
        TestCli::try_parse_from(argv).unwrap().args.validate()
    }

    #[test]
    fn defaults_match_the_original_tool() {
        let config = validate(&[]).unwrap();
        assert_eq!(config.num_users, 1);
        assert_eq!(config.arrival, Arrival::Burst);
        assert_eq!(config.system_prefix_tokens, 15000);
        assert_eq!(config.shape.user_prefix_tokens, 5000);
        assert_eq!(config.shape.input_tokens_per_turn, 5000);
        assert_eq!(config.shape.output_tokens_per_turn, 1000);
        assert_eq!(config.shape.max_context_tokens, 128000);
        assert_eq!(config.shape.compaction_prefix_increment, 5000);
        assert_eq!(config.max_turns, 100);
        assert!(config.ignore_eos);
        assert_eq!(config.request_timeout, Duration::from_secs(600));
        assert_eq!(config.metrics_interval, Duration::from_secs(5));
        assert_eq!(config.backend, Backend::Vllm);
        assert_eq!(config.output, PathBuf::from("results.json"));
        assert!(config.tokenizer_is_builtin);
    }

    #[test]
    fn ignore_eos_takes_a_value() {
        assert!(!validate(&["--ignore-eos", "false"]).unwrap().ignore_eos);
        assert!(validate(&["--ignore-eos"]).unwrap().ignore_eos);
    }

    #[test]
    fn invalid_values_name_option_and_value() {
        let cases: &[(&[&str], &str, &str)] = &[
            (
                &["--user-arrival", "steady:abc"],
                "--user-arrival",
                "steady:abc",
            ),
            (
                &["--user-arrival", "poisson:-1"],
                "--user-arrival",
                "poisson:-1",
            ),
            (&["--num-users", "0"], "--num-users", "0"),
            (&["--max-turns", "0"], "--max-turns", "0"),
            (&["--request-timeout", "0"], "--request-timeout", "0"),
            (&["--metrics-interval", "-1"], "--metrics-interval", "-1"),
            (&["--idle-timeout", "0"], "--idle-timeout", "0"),
            (
                &["--max-consecutive-failures", "0"],
                "--max-consecutive-failures",
                "0",
            ),
            (&["--interrupt-grace", "-2"], "--interrupt-grace", "-2"),
            (&["--backend", "tgi"], "--backend", "tgi"),
            (
                &["--metrics-endpoint", "localhost:8000"],
                "--metrics-endpoint",
                "localhost:8000",
            ),
            (
                &["--tokenizer", "/no/such/tokenizer.json"],
                "/no/such/tokenizer.json",
                "does not exist",
            ),
            (
                &["--system-prefix-source", "/no/such/file.txt"],
                "--system-prefix-source",
                "/no/such/file.txt",
            ),
            (
                &["--ca-cert", "/no/such/ca.pem"],
                "--ca-cert",
                "/no/such/ca.pem",
            ),
        ];
        for (args, option, value) in cases {
            let err = validate(args).unwrap_err();
            let message = error_chain(&err);
            assert!(message.contains(option), "{args:?}: {message}");
            assert!(message.contains(value), "{args:?}: {message}");
        }
    }

    #[test]
    fn invalid_endpoint_is_rejected() {
        let err =
            TestCli::try_parse_from(["clawperf", "--endpoint", "ftp://host/v1", "--model", "m"])
                .unwrap()
                .args
                .validate()
                .unwrap_err();
        assert!(err.to_string().contains("ftp://host/v1"), "{err}");
    }
}
