//! The benchmark runner: starts the target, the metrics poller and the users, and collects
//! what they measured into a [`RunResult`].
//!
//! The runner reports progress as typed [`RunEvent`]s on an optional channel. Reporters such as
//! the verbose log consume them, so adding an output never touches this loop.

mod aggregate;
mod stop;
mod user;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;
use url::Url;

use crate::client::{self, ChatClient, ClientError};
use crate::config::{RunConfig, SystemPrefixSource, Target};
use crate::content::{ContentError, ContentGenerator};
use crate::journal::{JournalError, TurnJournal};
use crate::mock::{MockConfig, MockError, MockServer};
use crate::preflight::{self, PreflightError};
use crate::prom::{MetricsPoller, PollReport, PollerStartError};
use crate::result::RunResult;
use crate::stats::LatencyHistogram;
use crate::tokenizer::{EncodeError, Tokenizer};
use crate::workload::WorkloadError;

pub use stop::StopHandle;
pub use user::{CONTEXT_OVERFLOW, StopReason, UserOutcome};

/// Progress of a run, in the order it happens. Times are seconds since the run start.
#[derive(Debug, Clone)]
pub enum RunEvent {
    UserStarted {
        user_id: usize,
        t_s: f64,
    },
    TurnStarted {
        user_id: usize,
        turn_id: usize,
        t_s: f64,
        input_tokens: u64,
    },
    Compaction {
        user_id: usize,
        turn_id: usize,
        t_s: f64,
        user_prefix_tokens: u64,
    },
    ContextOverflow {
        user_id: usize,
        turn_id: usize,
        t_s: f64,
        request_tokens: u64,
    },
    TurnFinished {
        user_id: usize,
        record: Box<crate::result::TurnRecord>,
    },
    UserStopped {
        user_id: usize,
        t_s: f64,
        reason: StopReason,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("failed to start the embedded mock server")]
    Mock(#[from] MockError),
    #[error("failed to build the HTTP client")]
    Client(#[from] ClientError),
    #[error("failed to prepare the content generator")]
    Content(#[from] ContentError),
    #[error("failed to prepare the system prefix from {path}")]
    SystemPrefix {
        path: String,
        #[source]
        source: EncodeError,
    },
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    #[error("pre-flight check failed")]
    Preflight(#[from] PreflightError),
    #[error("failed to start polling the metrics endpoint")]
    Poller(#[from] PollerStartError),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Runs the benchmark described by `config` and returns its result. Failed turns are
/// recorded in the result; an `Err` means the run could not start or could not go on.
pub async fn run(
    config: RunConfig,
    events: Option<UnboundedSender<RunEvent>>,
) -> Result<RunResult, RunError> {
    run_with_stop(config, events, StopHandle::new()).await
}

/// Runs the benchmark like [`run`], and stops it when `stop` is triggered: no new turn starts,
/// turns in flight get `config.interrupt_grace` to finish and are then aborted. The result of
/// a stopped run has every finished turn and `summary.interrupted` set.
pub async fn run_with_stop(
    config: RunConfig,
    events: Option<UnboundedSender<RunEvent>>,
    stop: StopHandle,
) -> Result<RunResult, RunError> {
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();

    let mock = match &config.target {
        Target::Mock { ttft, tpot } => {
            let mock_config = MockConfig {
                served_model_name: Some(config.model.clone()),
                ttft: *ttft,
                tpot: *tpot,
                tokenizer: config.tokenizer.clone(),
                seed: config.seed,
                ..MockConfig::default()
            };
            let server = MockServer::start(mock_config).await?;
            tracing::info!(url = %server.base_url(), "started the embedded mock server");
            Some(server)
        }
        Target::Remote { .. } => None,
    };
    let chat_url = match (&config.target, &mock) {
        (Target::Remote { chat_url }, _) => chat_url.clone(),
        (Target::Mock { .. }, Some(server)) => {
            mock_url(&format!("{}/chat/completions", server.base_url()))
        }
        (Target::Mock { .. }, None) => unreachable!("the mock target always starts a server"),
    };
    let metrics_url = match (&config.metrics_endpoint, &mock) {
        (Some(url), _) => Some(url.clone()),
        (None, Some(server)) => Some(mock_url(&server.metrics_url())),
        (None, None) => None,
    };

    let http = client::build_http_client(&config.tls)?;
    if let (Target::Remote { .. }, true) = (&config.target, config.preflight) {
        let models_url = client::base_url(&config.endpoint)
            .ok()
            .and_then(|base| base.join("models").ok())
            .expect("a validated endpoint has a base URL");
        preflight::check(&http, &models_url, config.api_key.as_deref(), &config.model).await?;
    }
    // Created after the pre-flight check, so that a run that never starts leaves no journal.
    let journal = match &config.journal {
        Some(path) => Some(Arc::new(TurnJournal::create(path)?)),
        None => None,
    };
    let mut chat = ChatClient::new(
        http.clone(),
        chat_url.clone(),
        config.api_key.clone(),
        config.request_timeout,
    )?;
    if let Some(idle_timeout) = config.idle_timeout {
        chat = chat.with_idle_timeout(idle_timeout);
    }
    let chat = Arc::new(chat);

    let tokenizer = config.tokenizer.clone();
    let generator = Arc::new(
        tokio::task::spawn_blocking(move || ContentGenerator::new(tokenizer))
            .await
            .expect("content generator setup does not panic")?,
    );
    let system_prefix = build_system_prefix(&config, &generator).await?;

    tracing::info!(
        endpoint = %chat_url,
        model = %config.model,
        users = config.num_users,
        turns = config.max_turns,
        arrival = %config.arrival,
        tokenizer = %config.tokenizer.source(),
        seed = config.seed,
        "starting the run"
    );
    let run_start = Instant::now();
    let poller = match &metrics_url {
        Some(url) => Some(
            MetricsPoller::start(
                http.clone(),
                url.clone(),
                config.backend,
                config.metrics_interval,
                run_start,
            )
            .await?,
        ),
        None => None,
    };

    let settings = Arc::new(user::UserSettings {
        chat,
        generator,
        system_prefix,
        shape: config.shape,
        model: config.model.clone(),
        max_turns: config.max_turns,
        ignore_eos: config.ignore_eos,
        seed: config.seed,
        run_start,
        events,
        journal: journal.clone(),
        max_consecutive_failures: config.max_consecutive_failures,
        stop: stop.clone(),
        cpu_slots: tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(1, |cores| cores.get()),
        ),
        itl: std::sync::Mutex::new(LatencyHistogram::new()),
    });
    let grace_timer = tokio::spawn(abort_after_grace(stop.clone(), config.interrupt_grace));
    let outcomes = run_users(&config, settings.clone()).await;
    grace_timer.abort();
    let outcomes = outcomes?;
    let itl = match settings.itl.lock() {
        Ok(histogram) => histogram.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    let duration = run_start.elapsed();
    let interrupted = stop.is_stopped();

    let poll_report = match poller {
        Some(poller) => poller.stop().await,
        None => PollReport::default(),
    };
    if let Some(server) = mock {
        server.shutdown().await;
    }
    if let Some(journal) = &journal {
        // The result JSON is written after this, so the journal is never behind it.
        let writer = Arc::clone(journal);
        let _ = tokio::task::spawn_blocking(move || writer.sync()).await;
    }
    if let Some(journal) = &journal
        && journal.failed_writes() > 0
    {
        tracing::warn!(
            path = %journal.path().display(),
            failed_writes = journal.failed_writes(),
            "some turns are missing from the turn journal"
        );
    }
    tracing::info!(
        duration_s = duration.as_secs_f64(),
        interrupted,
        "run finished"
    );

    let mut result = aggregate::build_result(
        &config,
        started_at,
        duration,
        metrics_url.as_ref(),
        outcomes,
        &itl,
        poll_report,
    );
    result.summary.interrupted = interrupted;
    Ok(result)
}

/// Aborts the turns still in flight once `grace` has passed after a stop.
async fn abort_after_grace(stop: StopHandle, grace: Duration) {
    stop.stopped().await;
    tokio::select! {
        () = tokio::time::sleep(grace) => {
            tracing::warn!(
                grace_s = grace.as_secs_f64(),
                "turns still in flight after the grace period are aborted"
            );
            stop.abort();
        }
        () = stop.aborted() => {}
    }
}

async fn run_users(
    config: &RunConfig,
    settings: Arc<user::UserSettings>,
) -> Result<Vec<UserOutcome>, RunError> {
    let offsets = config.arrival.start_offsets(config.num_users, config.seed);
    let mut users = JoinSet::new();
    for (user_id, offset) in offsets.into_iter().enumerate() {
        let settings = settings.clone();
        users.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep_until((settings.run_start + offset).into()) => {}
                () = settings.stop.stopped() => {}
            }
            user::run_user(user_id, settings).await
        });
    }
    let mut outcomes = Vec::with_capacity(config.num_users);
    while let Some(joined) = users.join_next().await {
        let outcome = match joined {
            Ok(outcome) => outcome?,
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        };
        outcomes.push(outcome);
    }
    outcomes.sort_by_key(|outcome| outcome.user_id);
    Ok(outcomes)
}

/// Builds the shared system prefix once for all users.
async fn build_system_prefix(
    config: &RunConfig,
    generator: &Arc<ContentGenerator>,
) -> Result<Arc<str>, RunError> {
    let tokens = config.system_prefix_tokens;
    match &config.system_prefix_source {
        SystemPrefixSource::Random => {
            let generator = generator.clone();
            let seed = config.seed;
            let text = tokio::task::spawn_blocking(move || {
                generator.generate(&mut StdRng::seed_from_u64(seed), tokens)
            })
            .await
            .expect("content generation does not panic")?;
            Ok(text.into())
        }
        SystemPrefixSource::File { path, text } => {
            let tokenizer = config.tokenizer.clone();
            let text = text.clone();
            let prefix =
                tokio::task::spawn_blocking(move || truncate_to_tokens(&tokenizer, &text, tokens))
                    .await
                    .expect("tokenizing does not panic")
                    .map_err(|source| RunError::SystemPrefix {
                        path: path.display().to_string(),
                        source,
                    })?;
            Ok(prefix.into())
        }
    }
}

/// Returns the longest prefix of `text` that encodes to at most `tokens` tokens. A shorter
/// file is used whole, with a warning.
fn truncate_to_tokens(
    tokenizer: &Tokenizer,
    text: &str,
    tokens: usize,
) -> Result<String, EncodeError> {
    let ids = tokenizer.encode(text)?;
    if ids.len() <= tokens {
        if ids.len() < tokens {
            tracing::warn!(
                file_tokens = ids.len(),
                requested = tokens,
                "the --system-prefix-source file is shorter than --system-prefix-tokens; using all of it"
            );
        }
        return Ok(text.to_owned());
    }
    let mut keep = tokens;
    loop {
        let prefix = tokenizer.decode(&ids[..keep])?;
        if keep == 0 || tokenizer.count(&prefix)? <= tokens {
            return Ok(prefix);
        }
        keep -= 1;
    }
}

fn mock_url(url: &str) -> Url {
    Url::parse(url).expect("the mock server's URLs are valid")
}
