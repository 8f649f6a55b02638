//! One chat completion inside the engine: its admission and prompt lookup, when its tokens are
//! due, and its moves between the waiting and running gauges.
//!
//! With the fixed latency model, token `i` (0-based) is due at `arrival + ttft + i * tpot`.
//! Deadlines are absolute (`PreciseTimer`, precise to tens of microseconds), so a delay
//! in emitting one token does not shift the later ones. A token that is already late goes out
//! at once, and the stream catches up. With the engine model, the scheduler sends each token when the engine step that
//! sampled it ends.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::engine::{MockState, Prompt};
use super::error::ApiError;
use super::scheduler::{EngineEvent, EngineRequest};
use crate::openai::{ChatMessage, PromptTokensDetails, Usage};

/// Latency of one request with the fixed model: the config's, or the request's override headers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub ttft: Duration,
    pub tpot: Duration,
}

/// Output token ids reserved up front; `max_tokens` comes from the client and may be huge.
const MAX_PREALLOCATED_TOKENS: u32 = 4096;

/// One generated token: its text and whether it is the request's last.
#[derive(Debug)]
pub(crate) struct Token {
    pub text: String,
    pub is_last: bool,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Waiting,
    Running { held_blocks: u64 },
    Finished,
}

/// The source of a request's tokens.
enum Source {
    /// The fixed latency model: a schedule from the arrival time.
    Schedule {
        prompt: Prompt,
        /// Boxed because the engine variant needs no generator of its own.
        rng: Box<StdRng>,
        first_token_at: Instant,
        tpot: Duration,
        output: Vec<u32>,
        phase: Phase,
    },
    /// The engine model: tokens sent by the scheduler.
    Engine {
        prompt_tokens: u64,
        cached_tokens: u64,
        events: mpsc::UnboundedReceiver<EngineEvent>,
    },
}

/// A request admitted to the engine. Dropping it before its last token (a client that
/// disconnects) still leaves the gauges and the cache as the engine would: a waiting request
/// leaves the queue, and a running one caches the blocks it computed.
pub(crate) struct Generation {
    state: Arc<MockState>,
    id: String,
    arrival: Instant,
    max_tokens: u32,
    emitted: u32,
    last_token_at: Option<Instant>,
    source: Source,
}

impl Generation {
    /// Admits a request that arrived at `arrival`, then tokenizes `messages` on a blocking
    /// thread. The request counts as waiting from here on. With the fixed model it also looks
    /// the prompt up, and with the engine model it queues the request for the scheduler.
    pub(crate) async fn admit(
        state: Arc<MockState>,
        arrival: Instant,
        timing: Timing,
        max_tokens: u32,
        messages: Vec<ChatMessage>,
    ) -> Result<Self, ApiError> {
        let index = state.admit();
        let waiting = WaitingGuard(Some(&state));
        let mut rng = StdRng::seed_from_u64(request_seed(state.config().seed, index));
        let id = format!("chatcmpl-{:016x}", rng.random::<u64>());

        let source = if state.is_engine_model() {
            let encode_state = Arc::clone(&state);
            let encoded =
                tokio::task::spawn_blocking(move || encode_state.encode_prompt(&messages)).await;
            let (prompt, prompt_hashes) = blocking_result(encoded)?;
            let (sender, events) = mpsc::unbounded_channel();
            let request = EngineRequest {
                prompt,
                prompt_hashes,
                max_tokens,
                rng,
                events: sender,
            };
            let block_size = state.config().block_size;
            let needed = request.total_blocks(block_size);
            if needed > state.hbm_capacity() {
                return Err(ApiError::bad_request(format!(
                    "request needs {needed} KV-cache blocks for {} prompt tokens and max_tokens \
                     {max_tokens}, but the engine has {} blocks of {block_size} tokens; send \
                     fewer tokens or start the server with more --num-gpu-blocks",
                    request.prompt.len(),
                    state.hbm_capacity()
                )));
            }
            let prompt_tokens = request.prompt.len() as u64;
            tracing::debug!(request_id = %id, prompt_tokens, max_tokens, "request queued");
            state.submit(request);
            Source::Engine {
                prompt_tokens,
                cached_tokens: 0,
                events,
            }
        } else {
            let lookup_state = Arc::clone(&state);
            let lookup =
                tokio::task::spawn_blocking(move || lookup_state.look_up_prompt(&messages)).await;
            let prompt = blocking_result(lookup)?;
            tracing::debug!(
                request_id = %id,
                prompt_tokens = prompt.ids.len(),
                cached_tokens = prompt.hit.blocks() * state.config().block_size,
                max_tokens,
                "request admitted"
            );
            Source::Schedule {
                prompt,
                rng: Box::new(rng),
                first_token_at: arrival + timing.ttft,
                tpot: timing.tpot,
                output: Vec::with_capacity(max_tokens.min(MAX_PREALLOCATED_TOKENS) as usize),
                phase: Phase::Waiting,
            }
        };
        waiting.disarm();
        Ok(Self {
            state,
            id,
            arrival,
            max_tokens,
            emitted: 0,
            last_token_at: None,
            source,
        })
    }

    /// Returns the response id, `chatcmpl-` and 16 hex digits.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Returns the usage the request will report once all tokens are out.
    pub(crate) fn usage(&self) -> Usage {
        let (prompt_tokens, cached_tokens) = match &self.source {
            Source::Schedule { prompt, .. } => (
                prompt.ids.len() as u64,
                (prompt.hit.blocks() * self.state.config().block_size) as u64,
            ),
            Source::Engine {
                prompt_tokens,
                cached_tokens,
                ..
            } => (*prompt_tokens, *cached_tokens),
        };
        let completion_tokens = u64::from(self.max_tokens);
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: Some(prompt_tokens + completion_tokens),
            prompt_tokens_details: Some(PromptTokensDetails {
                cached_tokens: Some(cached_tokens),
            }),
        }
    }

    /// Waits until the next token is due and returns it, or `None` after the last one. With
    /// the fixed model, the first token moves the request to running, and the last one finishes
    /// it before it is returned, so a client that has read it reads the final counters.
    /// Cancel-safe: dropping the future while it waits changes nothing.
    pub(crate) async fn next_token(&mut self) -> Option<Token> {
        if self.emitted == self.max_tokens {
            return None;
        }
        let token = match &mut self.source {
            Source::Schedule { .. } => self.next_scheduled_token().await,
            Source::Engine {
                events,
                cached_tokens,
                ..
            } => loop {
                match events.recv().await? {
                    EngineEvent::Admitted {
                        cached_tokens: cached,
                    } => *cached_tokens = cached,
                    EngineEvent::Token(token) => break token,
                }
            },
        };
        self.emitted += 1;
        self.record_latency(token.is_last);
        Some(token)
    }

    async fn next_scheduled_token(&mut self) -> Token {
        let Source::Schedule {
            prompt,
            rng,
            first_token_at,
            tpot,
            output,
            phase,
        } = &mut self.source
        else {
            unreachable!("called for the fixed latency model only");
        };
        let index = output.len() as u32;
        self.state
            .timer()
            .sleep_until(*first_token_at + *tpot * index)
            .await;

        if let Phase::Waiting = phase {
            let held_blocks = self.state.start_running(prompt);
            *phase = Phase::Running { held_blocks };
        }
        let (id, text) = self.state.generator().random_token(rng);
        let token = Token {
            text: text.to_owned(),
            is_last: index + 1 == self.max_tokens,
        };
        output.push(id);
        self.state.count_generated_token();
        if token.is_last {
            self.finish();
        }
        token
    }

    /// Records the token just emitted in the server's latency histograms.
    fn record_latency(&mut self, is_last: bool) {
        let now = Instant::now();
        let histograms = self.state.histograms();
        match self.last_token_at {
            None => histograms.ttft.observe(now - self.arrival),
            Some(previous) => histograms.inter_token.observe(now - previous),
        }
        if is_last {
            histograms.e2e.observe(now - self.arrival);
        }
        self.last_token_at = Some(now);
    }

    fn finish(&mut self) {
        if let Source::Schedule {
            prompt,
            output,
            phase,
            ..
        } = &mut self.source
            && let Phase::Running { held_blocks } = *phase
        {
            self.state.finish_running(prompt, output, held_blocks);
            *phase = Phase::Finished;
        }
    }
}

impl Drop for Generation {
    /// Releases a fixed-model request. An engine-model request needs nothing here, because the
    /// scheduler notices the closed channel.
    fn drop(&mut self) {
        if let Source::Schedule { phase, .. } = &self.source {
            match phase {
                Phase::Waiting => self.state.abandon(),
                Phase::Running { .. } => self.finish(),
                Phase::Finished => {}
            }
        }
    }
}

/// Unwraps the result of tokenizing on a blocking thread.
fn blocking_result<T>(
    result: Result<Result<T, crate::tokenizer::EncodeError>, tokio::task::JoinError>,
) -> Result<T, ApiError> {
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(ApiError::bad_request(format!(
            "failed to tokenize the messages: {err}"
        ))),
        Err(err) => Err(ApiError::internal(format!("prompt lookup failed: {err}"))),
    }
}

/// Removes an admitted request from the waiting gauge if it is dropped before it becomes a
/// [`Generation`] (a prompt that fails to tokenize, or a client that disconnects meanwhile).
struct WaitingGuard<'a>(Option<&'a MockState>);

impl WaitingGuard<'_> {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        if let Some(state) = self.0 {
            state.abandon();
        }
    }
}

/// Derives the seed of request `index` from the server's seed. Requests are numbered in the
/// order they are admitted, so concurrent requests get reproducible outputs only if they are
/// admitted in the same order.
fn request_seed(seed: u64, index: u64) -> u64 {
    // Multiplying by an odd constant (2^64 / golden ratio) spreads consecutive indices apart.
    seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
