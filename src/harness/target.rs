//! Starting a repetition's target (a fresh embedded mock, or the configured real stack) and
//! turning a scenario's workload into the runner's [`RunConfig`].

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::client::{self, ClientError, EndpointError, TlsOptions};
use crate::config::{BenchArgs, ConfigError, MOCK_ENDPOINT, RunConfig, Target};
use crate::mock::{MockConfig, MockError, MockServer};
use crate::tokenizer::{Tokenizer, TokenizerError};

use super::env::TargetSpec;
use super::scenario::{MockTarget, Workload};

/// Model name served by the embedded mock.
pub const MOCK_MODEL: &str = "mock";

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("failed to start the embedded mock server")]
    Mock(#[from] MockError),
    #[error("invalid CLAWPERF_ENDPOINT {endpoint:?}")]
    Endpoint {
        endpoint: String,
        #[source]
        source: EndpointError,
    },
    #[error("failed to load the tokenizer of CLAWPERF_TOKENIZER or CLAWPERF_MODEL")]
    Tokenizer(#[from] TokenizerError),
    #[error("failed to build the HTTP client")]
    Client(#[from] ClientError),
    #[error(
        "invalid CLAWPERF_METRICS_ENDPOINT {url:?}: expected a URL such as http://127.0.0.1:8000/metrics"
    )]
    MetricsEndpoint {
        url: String,
        #[source]
        source: url::ParseError,
    },
    #[error("invalid mock settings: ttft_ms {ttft_ms} and tpot_ms {tpot_ms} must be >= 0")]
    MockSettings { ttft_ms: f64, tpot_ms: f64 },
}

/// The target of one repetition. A mock target is a fresh server, so every repetition
/// starts with an empty prefix cache.
pub struct RepetitionTarget {
    pub base_url: Url,
    pub chat_url: Url,
    pub metrics_url: Option<Url>,
    pub model: String,
    pub api_key: Option<String>,
    pub tokenizer: Tokenizer,
    pub tokenizer_is_builtin: bool,
    pub backend: String,
    pub http: reqwest::Client,
    pub mock: Option<MockServer>,
}

fn duration_ms(ms: f64) -> Option<Duration> {
    (ms.is_finite() && ms >= 0.0).then(|| Duration::from_secs_f64(ms / 1000.0))
}

impl RepetitionTarget {
    /// Starts the mock described by `mock` (with the run's knobs applied) or connects to the
    /// real target of `spec`.
    pub async fn start(
        spec: &TargetSpec,
        mock: &MockTarget,
        seed: u64,
    ) -> Result<Self, TargetError> {
        let http = client::build_http_client(&TlsOptions::default())?;
        match spec {
            TargetSpec::Mock(knobs) => {
                let ttft_ms = mock.ttft_ms * knobs.ttft_scale;
                let tpot_ms = mock.tpot_ms * knobs.tpot_scale;
                let (Some(ttft), Some(tpot)) = (duration_ms(ttft_ms), duration_ms(tpot_ms)) else {
                    return Err(TargetError::MockSettings { ttft_ms, tpot_ms });
                };
                let config = MockConfig {
                    served_model_name: Some(MOCK_MODEL.to_owned()),
                    ttft,
                    tpot,
                    tokenizer: Tokenizer::builtin(),
                    prefix_caching: knobs.prefix_caching.unwrap_or(mock.prefix_caching),
                    seed,
                    ..MockConfig::default()
                };
                let server = MockServer::start(config).await?;
                let base_url = mock_url(&format!("{}/", server.base_url()));
                Ok(Self {
                    chat_url: mock_url(&format!("{}/chat/completions", server.base_url())),
                    metrics_url: Some(mock_url(&server.metrics_url())),
                    base_url,
                    model: MOCK_MODEL.to_owned(),
                    api_key: None,
                    tokenizer: Tokenizer::builtin(),
                    tokenizer_is_builtin: true,
                    backend: "vllm".to_owned(),
                    http,
                    mock: Some(server),
                })
            }
            TargetSpec::Remote(remote) => {
                let endpoint_error = |source| TargetError::Endpoint {
                    endpoint: remote.endpoint.clone(),
                    source,
                };
                let chat_url =
                    client::chat_completions_url(&remote.endpoint).map_err(endpoint_error)?;
                let base_url = client::base_url(&remote.endpoint).map_err(endpoint_error)?;
                let tokenizer_path = remote.tokenizer.clone();
                let model = remote.model.clone();
                let resolved = tokio::task::spawn_blocking(move || {
                    Tokenizer::resolve(tokenizer_path.as_deref(), &model)
                })
                .await
                .unwrap_or_else(|err| std::panic::resume_unwind(err.into_panic()))?;
                let metrics_url =
                    match remote.metrics_endpoint.as_deref() {
                        Some(url) => Some(Url::parse(url).map_err(|source| {
                            TargetError::MetricsEndpoint {
                                url: url.to_owned(),
                                source,
                            }
                        })?),
                        None => None,
                    };
                Ok(Self {
                    base_url,
                    chat_url,
                    metrics_url,
                    model: remote.model.clone(),
                    api_key: remote.api_key.clone(),
                    tokenizer_is_builtin: resolved.is_none(),
                    tokenizer: resolved.unwrap_or_else(Tokenizer::builtin),
                    backend: remote.backend.clone(),
                    http,
                    mock: None,
                })
            }
        }
    }

    /// Stops the mock server, if this target started one.
    pub async fn stop(self) {
        if let Some(server) = self.mock {
            server.shutdown().await;
        }
    }
}

fn mock_url(url: &str) -> Url {
    Url::parse(url).expect("the mock server's URLs are valid")
}

/// Builds the runner's configuration for one repetition of `workload` against `target`,
/// validating every option as the CLI does.
pub fn build_run_config(
    workload: &Workload,
    target: &RepetitionTarget,
) -> Result<RunConfig, ConfigError> {
    let is_mock = target.mock.is_some();
    let args = BenchArgs {
        endpoint: if is_mock {
            MOCK_ENDPOINT.to_owned()
        } else {
            target.chat_url.to_string()
        },
        model: target.model.clone(),
        api_key: target.api_key.clone(),
        // The target's tokenizer is already loaded; it replaces the built-in one below.
        tokenizer: None,
        num_users: workload.num_users,
        user_arrival: workload.user_arrival.clone(),
        system_prefix_tokens: workload.system_prefix_tokens,
        system_prefix_source: workload.system_prefix_source.clone(),
        user_prefix_tokens: workload.user_prefix_tokens,
        input_tokens_per_turn: workload.input_tokens_per_turn,
        output_tokens_per_turn: workload.output_tokens_per_turn,
        max_context_tokens: workload.max_context_tokens,
        compaction_prefix_increment: workload.compaction_prefix_increment,
        max_turns: workload.max_turns,
        ignore_eos: workload.ignore_eos,
        request_timeout: workload.request_timeout_s,
        idle_timeout: None,
        max_consecutive_failures: None,
        // Repetitions keep their records in memory; a journal file would only collide.
        journal: None,
        interrupt_grace: 5.0,
        metrics_endpoint: target.metrics_url.as_ref().map(Url::to_string),
        metrics_interval: workload.metrics_interval_s,
        backend: target.backend.clone(),
        output: PathBuf::from("results.json"),
        verbose: false,
        quiet: true,
        ca_cert: None,
        insecure: false,
        // The mock is ours; a real target is checked once per repetition.
        no_preflight: is_mock,
        seed: Some(workload.seed),
        mock_ttft: None,
        mock_tpot: None,
    };
    let mut config = args.validate()?;
    config.target = Target::Remote {
        chat_url: target.chat_url.clone(),
    };
    config.endpoint = target.base_url.to_string();
    config.tokenizer = target.tokenizer.clone();
    config.tokenizer_is_builtin = target.tokenizer_is_builtin;
    Ok(config)
}
