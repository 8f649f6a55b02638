//! One chat completion inside the engine: its admission and prompt lookup, the schedule its
//! tokens are due on, and its moves between the waiting and running gauges.
//!
//! Token `i` (0-based) is due at `arrival + ttft + i * tpot`. Deadlines are absolute
//! (`tokio::time::sleep_until`), so a delay in emitting one token does not shift the later
//! ones. A token that is already late goes out at once, and the stream catches up.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::engine::{MockState, Prompt};
use super::error::ApiError;
use crate::openai::{ChatMessage, PromptTokensDetails, Usage};

/// Latency of one request: the config's, or the request's override headers.
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

/// A request admitted to the engine. Dropping it before its last token (a client that
/// disconnects) still leaves the gauges and the cache as the engine would: a waiting request
/// leaves the queue, and a running one caches the blocks it computed.
pub(crate) struct Generation {
    state: Arc<MockState>,
    id: String,
    prompt: Prompt,
    rng: StdRng,
    first_token_at: Instant,
    tpot: Duration,
    max_tokens: u32,
    output: Vec<u32>,
    phase: Phase,
}

impl Generation {
    /// Admits a request that arrived at `arrival`, then tokenizes `messages` and looks up the
    /// prompt on a blocking thread. The request counts as waiting from here on.
    pub(crate) async fn admit(
        state: Arc<MockState>,
        arrival: Instant,
        timing: Timing,
        max_tokens: u32,
        messages: Vec<ChatMessage>,
    ) -> Result<Self, ApiError> {
        let index = state.admit();
        let waiting = WaitingGuard(Some(&state));

        let lookup_state = Arc::clone(&state);
        let lookup = tokio::task::spawn_blocking(move || lookup_state.look_up_prompt(&messages));
        let prompt = match lookup.await {
            Ok(Ok(prompt)) => prompt,
            Ok(Err(err)) => {
                return Err(ApiError::bad_request(format!(
                    "failed to tokenize the messages: {err}"
                )));
            }
            Err(err) => {
                return Err(ApiError::internal(format!("prompt lookup failed: {err}")));
            }
        };
        waiting.disarm();

        let mut rng = StdRng::seed_from_u64(request_seed(state.config().seed, index));
        let id = format!("chatcmpl-{:016x}", rng.random::<u64>());
        tracing::debug!(
            request_id = %id,
            prompt_tokens = prompt.ids.len(),
            cached_tokens = prompt.hit.blocks() * state.config().block_size,
            max_tokens,
            "request admitted"
        );
        Ok(Self {
            state,
            id,
            prompt,
            rng,
            first_token_at: arrival + timing.ttft,
            tpot: timing.tpot,
            max_tokens,
            output: Vec::with_capacity(max_tokens.min(MAX_PREALLOCATED_TOKENS) as usize),
            phase: Phase::Waiting,
        })
    }

    /// Returns the response id, `chatcmpl-` and 16 hex digits.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Returns the usage the request will report once all tokens are out.
    pub(crate) fn usage(&self) -> Usage {
        let prompt_tokens = self.prompt.ids.len() as u64;
        let completion_tokens = u64::from(self.max_tokens);
        let cached_tokens = (self.prompt.hit.blocks() * self.state.config().block_size) as u64;
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: Some(prompt_tokens + completion_tokens),
            prompt_tokens_details: Some(PromptTokensDetails {
                cached_tokens: Some(cached_tokens),
            }),
        }
    }

    /// Waits until the next token is due and returns it, or `None` after the last one. The
    /// first token moves the request to running; the last one finishes it before it is
    /// returned, so a client that has read it reads the final counters. Cancel-safe: dropping
    /// the future while it waits changes nothing.
    pub(crate) async fn next_token(&mut self) -> Option<Token> {
        let index = self.output.len() as u32;
        if index == self.max_tokens {
            return None;
        }
        tokio::time::sleep_until(self.first_token_at + self.tpot * index).await;

        if let Phase::Waiting = self.phase {
            let held_blocks = self.state.start_running(&self.prompt);
            self.phase = Phase::Running { held_blocks };
        }
        let (id, text) = self.state.generator().random_token(&mut self.rng);
        let token = Token {
            text: text.to_owned(),
            is_last: index + 1 == self.max_tokens,
        };
        self.output.push(id);
        self.state.count_generated_token();
        if token.is_last {
            self.finish();
        }
        Some(token)
    }

    fn finish(&mut self) {
        if let Phase::Running { held_blocks } = self.phase {
            self.state
                .finish_running(&self.prompt, &self.output, held_blocks);
            self.phase = Phase::Finished;
        }
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        match self.phase {
            Phase::Waiting => self.state.abandon(),
            Phase::Running { .. } => self.finish(),
            Phase::Finished => {}
        }
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
