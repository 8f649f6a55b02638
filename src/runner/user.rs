//! One simulated user: its conversation, turn after turn, closed-loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use crate::client::{ChatClient, StreamRecord, TurnFailure};
use crate::content::ContentGenerator;
use crate::journal::TurnJournal;
use crate::openai::{ChatCompletionRequest, StreamOptions};
use crate::result::{TokenCountSource, TurnError, TurnRecord};
use crate::stats::LatencyHistogram;
use crate::workload::{Conversation, ConversationShape, PlannedTurn, TurnPlan, WorkloadError};

use super::{RunEvent, StopHandle};

/// The `TurnError::class` of a turn that was not sent because its context did not fit.
pub const CONTEXT_OVERFLOW: &str = "context_overflow";

/// Settings every user shares.
pub(super) struct UserSettings {
    pub chat: Arc<ChatClient>,
    pub generator: Arc<ContentGenerator>,
    pub system_prefix: Arc<str>,
    pub shape: ConversationShape,
    pub model: String,
    pub max_turns: usize,
    pub ignore_eos: bool,
    pub seed: u64,
    pub run_start: Instant,
    pub events: Option<UnboundedSender<RunEvent>>,
    /// The journal that every finished turn is appended to, if any.
    pub journal: Option<Arc<TurnJournal>>,
    /// Failed turns in a row after which a user stops; `None` never stops it.
    pub max_consecutive_failures: Option<usize>,
    pub stop: StopHandle,
    /// Permits for CPU-bound work (content generation, tokenizing), one per core. Without them
    /// a burst of users would start a blocking thread each, up to tokio's 512, whose stacks
    /// and allocator arenas cost memory and whose contention delays the timestamps of streams.
    pub cpu_slots: tokio::sync::Semaphore,
    /// Inter-token latencies of all users. One shared histogram, because a histogram per user
    /// costs about 90 KiB (3 significant digits up to seconds in microseconds), and per-user
    /// ITL statistics are not reported.
    pub itl: std::sync::Mutex<LatencyHistogram>,
}

/// Reason a user stopped sending turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    MaxTurns,
    ContextOverflow,
    /// `--max-consecutive-failures` turns failed in a row.
    ConsecutiveFailures,
    /// The run was stopped (Ctrl-C, SIGTERM) before the user finished its turns.
    Interrupted,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::MaxTurns => "max_turns",
            StopReason::ContextOverflow => CONTEXT_OVERFLOW,
            StopReason::ConsecutiveFailures => "consecutive_failures",
            StopReason::Interrupted => "interrupted",
        }
    }
}

/// Measurements of one user. Latencies are kept as one sample per turn rather than as
/// histograms, so that a user costs memory in proportion to its turns: 1000 users with five
/// histograms each would hold about 450 MiB.
#[derive(Debug)]
pub struct UserOutcome {
    pub user_id: usize,
    pub turns: Vec<TurnRecord>,
    pub stop_reason: StopReason,
    pub started_s: f64,
    pub stopped_s: f64,
    pub ttft: Vec<Duration>,
    pub time_to_first_content: Vec<Duration>,
    pub tpot: Vec<Duration>,
    pub e2e: Vec<Duration>,
    /// Turns that were in flight when the run was aborted; they have no record.
    pub aborted_turns: u64,
}

pub(super) async fn run_user(
    user_id: usize,
    settings: Arc<UserSettings>,
) -> Result<UserOutcome, WorkloadError> {
    if settings.stop.is_stopped() {
        return Ok(UserOutcome::not_started(user_id, &settings));
    }
    let seed = user_seed(settings.seed, user_id);
    let shape = settings.shape;
    let generator = settings.generator.clone();
    let system_prefix = settings.system_prefix.clone();
    let mut conversation = blocking(&settings.cpu_slots, move || {
        Conversation::new(shape, system_prefix, generator, seed)
    })
    .await?;

    let started_s = settings.run_start.elapsed().as_secs_f64();
    settings.emit(RunEvent::UserStarted {
        user_id,
        t_s: started_s,
    });
    let mut outcome = UserOutcome::new(user_id, started_s, settings.max_turns);
    let mut consecutive_failures = 0;

    for turn_id in 1..=settings.max_turns {
        if settings.stop.is_stopped() {
            outcome.stop_reason = StopReason::Interrupted;
            break;
        }
        // Tokenizing a long context takes milliseconds of CPU; it runs off the async workers
        // so that it never delays the timestamps of other users' streams.
        let (returned, plan) = blocking(&settings.cpu_slots, move || {
            let plan = conversation.plan_turn();
            (conversation, plan)
        })
        .await;
        conversation = returned;

        let turn = match plan? {
            TurnPlan::Send(turn) => turn,
            TurnPlan::Overflow {
                request_tokens,
                compacted_request_tokens,
            } => {
                let t_s = settings.run_start.elapsed().as_secs_f64();
                let prefix_tokens = conversation.user_prefix_tokens();
                let record = overflow_record(
                    turn_id,
                    t_s,
                    request_tokens,
                    compacted_request_tokens,
                    prefix_tokens,
                    &settings.shape,
                );
                settings.emit(RunEvent::ContextOverflow {
                    user_id,
                    turn_id,
                    t_s,
                    request_tokens: request_tokens as u64,
                });
                settings.finish_turn(&mut outcome, record);
                outcome.stop_reason = StopReason::ContextOverflow;
                break;
            }
        };
        if turn.compacted {
            settings.emit(RunEvent::Compaction {
                user_id,
                turn_id,
                t_s: settings.run_start.elapsed().as_secs_f64(),
                user_prefix_tokens: turn.user_prefix_tokens as u64,
            });
        }

        if settings.stop.is_stopped() {
            outcome.stop_reason = StopReason::Interrupted;
            break;
        }
        let request = settings.request(&turn);
        let start_s = settings.run_start.elapsed().as_secs_f64();
        settings.emit(RunEvent::TurnStarted {
            user_id,
            turn_id,
            t_s: start_s,
            input_tokens: turn.prompt_tokens as u64,
        });
        let result = tokio::select! {
            biased;
            () = settings.stop.aborted() => None,
            result = settings.chat.stream_chat(&request) => Some(result),
        };
        let Some(result) = result else {
            tracing::debug!(user_id, turn_id, "aborted the turn in flight");
            outcome.aborted_turns += 1;
            outcome.stop_reason = StopReason::Interrupted;
            break;
        };

        let record = match result {
            Ok(stream) => {
                let (output_tokens, source) = count_output_tokens(&stream, &settings).await;
                let record =
                    success_record(turn_id, start_s, &turn, &stream, output_tokens, source);
                outcome.record_latencies(&stream, record.tpot_ms);
                record_itl(&settings.itl, &stream);
                conversation.commit_turn(turn, stream.content);
                record
            }
            Err(failure) => failure_record(turn_id, start_s, &turn, failure),
        };
        // A failed turn's input is not added to the history, so the next turn resends the
        // same context plus a new input.
        consecutive_failures = if record.success {
            0
        } else {
            consecutive_failures + 1
        };
        outcome.stopped_s = settings.run_start.elapsed().as_secs_f64();
        settings.finish_turn(&mut outcome, record);
        if settings
            .max_consecutive_failures
            .is_some_and(|limit| consecutive_failures >= limit)
        {
            tracing::warn!(
                user_id,
                turn_id,
                consecutive_failures,
                "the user stops after {consecutive_failures} failed turns in a row \
                 (--max-consecutive-failures)"
            );
            outcome.stop_reason = StopReason::ConsecutiveFailures;
            break;
        }
    }

    outcome.stopped_s = settings.run_start.elapsed().as_secs_f64();
    settings.emit(RunEvent::UserStopped {
        user_id,
        t_s: outcome.stopped_s,
        reason: outcome.stop_reason,
    });
    Ok(outcome)
}

impl UserSettings {
    /// Records a finished turn: appends it to the journal, reports it and keeps it.
    fn finish_turn(&self, outcome: &mut UserOutcome, record: TurnRecord) {
        if let Some(journal) = &self.journal {
            journal.append(outcome.user_id, &record);
        }
        self.emit(RunEvent::TurnFinished {
            user_id: outcome.user_id,
            record: Box::new(record.clone()),
        });
        outcome.turns.push(record);
    }

    fn emit(&self, event: RunEvent) {
        if let Some(events) = &self.events {
            // The receiver going away (a reporter that stopped early) must not stop the run.
            let _ = events.send(event);
        }
    }

    fn request(&self, turn: &PlannedTurn) -> ChatCompletionRequest {
        ChatCompletionRequest {
            model: self.model.clone(),
            messages: turn.messages.clone(),
            max_tokens: Some(u32::try_from(self.shape.output_tokens_per_turn).unwrap_or(u32::MAX)),
            stream: true,
            stream_options: Some(StreamOptions {
                include_usage: true,
            }),
            ignore_eos: Some(self.ignore_eos),
            temperature: None,
        }
    }
}

impl UserOutcome {
    fn new(user_id: usize, started_s: f64, max_turns: usize) -> Self {
        Self {
            user_id,
            turns: Vec::with_capacity(max_turns),
            stop_reason: StopReason::MaxTurns,
            started_s,
            stopped_s: started_s,
            ttft: Vec::with_capacity(max_turns),
            time_to_first_content: Vec::new(),
            tpot: Vec::with_capacity(max_turns),
            e2e: Vec::with_capacity(max_turns),
            aborted_turns: 0,
        }
    }

    /// Returns the outcome of a user whose arrival came after the run was stopped.
    pub(super) fn not_started(user_id: usize, settings: &UserSettings) -> Self {
        let now_s = settings.run_start.elapsed().as_secs_f64();
        let mut outcome = Self::new(user_id, now_s, 0);
        outcome.stop_reason = StopReason::Interrupted;
        outcome
    }

    fn record_latencies(&mut self, stream: &StreamRecord, tpot_ms: Option<f64>) {
        self.ttft.extend(stream.ttft);
        self.time_to_first_content
            .extend(stream.time_to_first_content);
        self.e2e.extend(stream.e2e);
        if let Some(tpot_ms) = tpot_ms {
            self.tpot.push(Duration::from_secs_f64(tpot_ms / 1000.0));
        }
    }
}

/// Records a turn's inter-token latencies into the run's histogram, under its lock once per
/// turn.
fn record_itl(itl: &std::sync::Mutex<LatencyHistogram>, stream: &StreamRecord) {
    if stream.itl.is_empty() {
        return;
    }
    let mut histogram = match itl.lock() {
        Ok(histogram) => histogram,
        Err(poisoned) => poisoned.into_inner(),
    };
    for gap in &stream.itl {
        histogram.record(*gap);
    }
}

/// Derives a user's seed so that users get different but reproducible content.
fn user_seed(run_seed: u64, user_id: usize) -> u64 {
    run_seed ^ (user_id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Runs CPU-bound `work` on the blocking pool once one of `cpu_slots` is free.
async fn blocking<T: Send + 'static>(
    cpu_slots: &tokio::sync::Semaphore,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let _permit = cpu_slots
        .acquire()
        .await
        .expect("the CPU semaphore is never closed");
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    }
}

/// Takes the output-token count from `usage`, else re-encodes the output text.
async fn count_output_tokens(
    stream: &StreamRecord,
    settings: &UserSettings,
) -> (Option<u64>, Option<TokenCountSource>) {
    if let Some(usage) = stream.usage {
        return (Some(usage.completion_tokens), Some(TokenCountSource::Usage));
    }
    let stream = stream.clone();
    let generator = settings.generator.clone();
    match blocking(&settings.cpu_slots, move || {
        stream.output_tokens(generator.tokenizer())
    })
    .await
    {
        Ok((count, source)) => (Some(count), Some(source)),
        Err(err) => {
            tracing::warn!(error = %err, "failed to count output tokens");
            (None, None)
        }
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// TPOT = (E2E − TTFT) / (output tokens − 1); absent unless more than one token came back.
fn tpot_ms(stream: &StreamRecord, output_tokens: Option<u64>) -> Option<f64> {
    let (ttft, e2e, tokens) = (stream.ttft?, stream.e2e?, output_tokens?);
    (tokens > 1).then(|| ms(e2e.saturating_sub(ttft)) / (tokens - 1) as f64)
}

fn success_record(
    turn_id: usize,
    start_s: f64,
    turn: &PlannedTurn,
    stream: &StreamRecord,
    output_tokens: Option<u64>,
    output_tokens_source: Option<TokenCountSource>,
) -> TurnRecord {
    let itl_count = stream.itl.len() as u64;
    let itl_total: Duration = stream.itl.iter().sum();
    TurnRecord {
        turn_id,
        success: true,
        start_s,
        ttft_ms: stream.ttft.map(ms),
        time_to_first_content_ms: stream.time_to_first_content.map(ms),
        e2e_latency_ms: stream.e2e.map(ms),
        stream_end_ms: Some(ms(stream.stream_end)),
        tpot_ms: tpot_ms(stream, output_tokens),
        itl_count,
        itl_mean_ms: (itl_count > 0).then(|| ms(itl_total) / itl_count as f64),
        itl_max_ms: stream.itl.iter().max().copied().map(ms),
        input_tokens: turn.prompt_tokens as u64,
        new_input_tokens: turn.new_input_tokens as u64,
        output_tokens,
        output_tokens_source,
        context_tokens: (turn.prompt_tokens as u64) + output_tokens.unwrap_or(0),
        user_prefix_tokens: turn.user_prefix_tokens as u64,
        compaction_triggered: turn.compacted,
        server_prompt_tokens: stream.usage.map(|usage| usage.prompt_tokens),
        server_completion_tokens: stream.usage.map(|usage| usage.completion_tokens),
        server_cached_tokens: stream.usage.and_then(|usage| usage.cached_tokens()),
        finish_reason: stream.finish_reason.clone(),
        error: None,
    }
}

fn failure_record(
    turn_id: usize,
    start_s: f64,
    turn: &PlannedTurn,
    failure: TurnFailure,
) -> TurnRecord {
    TurnRecord {
        error: Some(TurnError {
            class: failure.class.as_str().to_owned(),
            message: failure.message,
            status: failure.status,
        }),
        stream_end_ms: None,
        ..empty_record(turn_id, start_s, turn.prompt_tokens as u64, turn)
    }
}

fn empty_record(turn_id: usize, start_s: f64, input_tokens: u64, turn: &PlannedTurn) -> TurnRecord {
    TurnRecord {
        turn_id,
        success: false,
        start_s,
        ttft_ms: None,
        time_to_first_content_ms: None,
        e2e_latency_ms: None,
        stream_end_ms: None,
        tpot_ms: None,
        itl_count: 0,
        itl_mean_ms: None,
        itl_max_ms: None,
        input_tokens,
        new_input_tokens: turn.new_input_tokens as u64,
        output_tokens: None,
        output_tokens_source: None,
        context_tokens: input_tokens,
        user_prefix_tokens: turn.user_prefix_tokens as u64,
        compaction_triggered: turn.compacted,
        server_prompt_tokens: None,
        server_completion_tokens: None,
        server_cached_tokens: None,
        finish_reason: None,
        error: None,
    }
}

fn overflow_record(
    turn_id: usize,
    t_s: f64,
    request_tokens: usize,
    compacted_request_tokens: usize,
    user_prefix_tokens: usize,
    shape: &ConversationShape,
) -> TurnRecord {
    let prompt_tokens = request_tokens.saturating_sub(shape.output_tokens_per_turn);
    let placeholder = PlannedTurn {
        messages: Vec::new(),
        prompt_tokens,
        new_input_tokens: shape.input_tokens_per_turn,
        compacted: false,
        user_prefix_tokens,
    };
    let mut record = empty_record(turn_id, t_s, prompt_tokens as u64, &placeholder);
    let limit = shape.max_context_tokens;
    let message = if request_tokens == compacted_request_tokens {
        // Nothing to compact: the request already is system prefix, user prefix and input.
        format!(
            "the request without history needs {request_tokens} tokens (prompt + max_tokens), \
             which reaches --max-context-tokens {limit}; raise --max-context-tokens or lower \
             --system-prefix-tokens, --user-prefix-tokens, --input-tokens-per-turn or \
             --output-tokens-per-turn"
        )
    } else {
        format!(
            "request of {request_tokens} tokens (prompt + max_tokens) reaches --max-context-tokens \
             {limit}, and compaction would still need {compacted_request_tokens}; raise \
             --max-context-tokens or lower the prefix, input or output sizes"
        )
    };
    record.error = Some(TurnError {
        class: CONTEXT_OVERFLOW.to_owned(),
        message,
        status: None,
    });
    record
}
