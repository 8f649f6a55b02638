//! The continuous-batching scheduler of the engine latency model, stepping in real time.
//!
//! Each step first gives every running request its share of the step's token budget
//! (`max_num_batched_tokens`): a request still prefilling takes its next chunk of prompt
//! tokens, and a decoding request takes one token. Then it admits waiting requests in arrival
//! order while the step has budget, fewer than `max_num_seqs` requests run, and the KV cache
//! has room for the request. A request that does not fit waits, and so do the requests behind
//! it. The step lasts [`EngineParams::step_us`] of the requests it served (times a jitter
//! factor when jitter is on). When it ends, every request whose prompt is complete samples one
//! token: its first token right after the last prefill chunk, then one per step.
//!
//! Blocks become cached as soon as their tokens are computed: prompt blocks chunk by chunk,
//! generated blocks as decoding fills them. Like vLLM, the KV of the last sampled token is
//! never computed, so a finished request caches `prompt ++ output[..n - 1]`.
//!
//! NOTE: a request reserves blocks for its whole prompt and `max_tokens` on admission, where
//! vLLM allocates blocks as the sequence grows and preempts requests when the cache runs out.
//! The mock therefore never preempts, and under memory pressure it admits fewer requests and
//! shows a higher `kv_cache_usage_perc` than vLLM would for the same load.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::cache::{BlockHash, hash_blocks};
use super::engine::MockState;
use super::generation::Token;
use super::kv::KvCache;
use super::options::EngineParams;
use crate::content::ContentGenerator;

/// A message from the scheduler to the response of one request.
#[derive(Debug)]
pub(crate) enum EngineEvent {
    /// The request left the queue; `cached_tokens` of its prompt came from either cache tier.
    Admitted {
        cached_tokens: u64,
    },
    Token(Token),
}

/// A tokenized request handed to the scheduler.
#[derive(Debug)]
pub(crate) struct EngineRequest {
    pub prompt: Vec<u32>,
    pub prompt_hashes: Vec<BlockHash>,
    pub max_tokens: u32,
    pub rng: StdRng,
    pub events: mpsc::UnboundedSender<EngineEvent>,
}

impl EngineRequest {
    /// Returns the blocks the request holds at its longest: the prompt and every generated
    /// token but the last, whose KV is never computed.
    pub(crate) fn total_blocks(&self, block_size: usize) -> usize {
        (self.prompt.len() + self.max_tokens as usize - 1).div_ceil(block_size)
    }
}

#[derive(Debug)]
struct Running {
    request: EngineRequest,
    /// Prompt and generated token ids.
    tokens: Vec<u32>,
    /// Cached blocks the request references, in sequence order from its first block.
    cached: Vec<BlockHash>,
    /// Reserved blocks that hold no cached content yet.
    uncached: usize,
    /// Tokens whose KV is computed or loaded.
    computed: usize,
    /// Tokens this request computes in the current step.
    scheduled: usize,
}

impl Running {
    fn prompt_len(&self) -> usize {
        self.request.prompt.len()
    }

    fn output_len(&self) -> usize {
        self.tokens.len() - self.prompt_len()
    }

    /// Caches every block that the computed tokens have filled.
    fn cache_full_blocks(&mut self, kv: &mut KvCache, block_size: usize) {
        while (self.cached.len() + 1) * block_size <= self.computed {
            let index = self.cached.len();
            let hash = match self.request.prompt_hashes.get(index) {
                Some(&hash) => hash,
                None => {
                    let block = &self.tokens[index * block_size..(index + 1) * block_size];
                    hash_blocks(block, block_size, self.cached.last().copied())[0]
                }
            };
            kv.cache_block(hash, true);
            self.cached.push(hash);
            self.uncached -= 1;
        }
    }
}

/// Gauges and counters that one scheduling phase changed, for the engine's totals.
#[derive(Debug, Default)]
pub(crate) struct StepChanges {
    /// Requests that left the queue, for the waiting gauge; finished ones leave running.
    pub admitted: u64,
    /// Requests dropped from the queue because their client went away.
    pub abandoned: u64,
    /// Running requests that ended: their last token was sampled or their client went away.
    pub finished: u64,
    pub prompt_tokens: u64,
    pub generated_tokens: u64,
}

/// The scheduler's queues and the KV cache it allocates from.
#[derive(Debug)]
pub(crate) struct Scheduler {
    params: EngineParams,
    block_size: usize,
    kv: KvCache,
    waiting: VecDeque<EngineRequest>,
    running: Vec<Running>,
    jitter_rng: StdRng,
    steps: u64,
}

impl Scheduler {
    pub(crate) fn new(params: EngineParams, block_size: usize, kv: KvCache, seed: u64) -> Self {
        Self {
            params,
            block_size,
            kv,
            waiting: VecDeque::new(),
            running: Vec::new(),
            // A distinct stream from the output text's and the faults', which share the seed.
            jitter_rng: StdRng::seed_from_u64(seed ^ 0x5C4E_D11E_5C4E_D11E),
            steps: 0,
        }
    }

    pub(crate) fn kv(&self) -> &KvCache {
        &self.kv
    }

    pub(crate) fn waiting_len(&self) -> usize {
        self.waiting.len()
    }

    pub(crate) fn running_len(&self) -> usize {
        self.running.len()
    }

    /// Returns the number of steps run so far.
    pub(crate) fn steps(&self) -> u64 {
        self.steps
    }

    pub(crate) fn enqueue(&mut self, request: EngineRequest) {
        self.waiting.push_back(request);
    }

    /// Schedules the next step and returns its duration, or `None` when no request can run.
    pub(crate) fn plan_step(&mut self, changes: &mut StepChanges) -> Option<Duration> {
        let mut budget = self.params.max_num_batched_tokens;
        let mut batch = 0;
        let mut prefill_tokens = 0;
        for running in &mut self.running {
            let requested = if running.computed < running.prompt_len() {
                running.prompt_len() - running.computed
            } else {
                1
            };
            running.scheduled = requested.min(budget);
            if running.scheduled > 0 {
                budget -= running.scheduled;
                batch += 1;
                if running.computed < running.prompt_len() {
                    prefill_tokens += running.scheduled;
                }
            }
        }

        let mut external_tokens = 0;
        while budget > 0 && self.running.len() < self.params.max_num_seqs {
            let Some(request) = self.waiting.front() else {
                break;
            };
            if request.events.is_closed() {
                self.waiting.pop_front();
                changes.abandoned += 1;
                continue;
            }
            let total_blocks = request.total_blocks(self.block_size);
            let Some(admission) =
                self.kv
                    .admit(&request.prompt_hashes, request.prompt.len(), total_blocks)
            else {
                break;
            };
            let request = self.waiting.pop_front().expect("front exists");
            let hit = admission.hit;
            let hbm_tokens = hit.hbm_blocks * self.block_size;
            let loaded = &request.prompt_hashes[hit.hbm_blocks..hit.blocks()];
            for &hash in loaded {
                self.kv.cache_block(hash, false);
            }
            let loaded_tokens = loaded.len() * self.block_size;
            external_tokens += loaded_tokens;

            let cached_tokens = (hbm_tokens + loaded_tokens) as u64;
            // A closed receiver is noticed when the first token is sent.
            let _ = request.events.send(EngineEvent::Admitted { cached_tokens });
            changes.admitted += 1;
            changes.prompt_tokens += request.prompt.len() as u64;

            let mut running = Running {
                tokens: request.prompt.clone(),
                cached: request.prompt_hashes[..hit.blocks()].to_vec(),
                uncached: total_blocks - hit.blocks(),
                computed: hbm_tokens + loaded_tokens,
                scheduled: 0,
                request,
            };
            // The last prompt token is never a hit, so at least one token is left to compute.
            running.scheduled = (running.prompt_len() - running.computed).min(budget);
            budget -= running.scheduled;
            prefill_tokens += running.scheduled;
            batch += 1;
            self.running.push(running);
        }

        if batch == 0 {
            return None;
        }
        let mut step_us = self.params.step_us(batch, prefill_tokens, external_tokens);
        if self.params.jitter > 0.0 {
            let jitter = self.params.jitter;
            step_us *= self.jitter_rng.random_range(1.0 - jitter..=1.0 + jitter);
        }
        Some(Duration::from_secs_f64(step_us.max(0.0) / 1e6))
    }

    /// Ends the step that [`plan_step`](Self::plan_step) planned: advances every scheduled
    /// request, samples its next token, and releases the requests that finished or whose
    /// client went away.
    pub(crate) fn complete_step(
        &mut self,
        generator: &ContentGenerator,
        changes: &mut StepChanges,
    ) {
        self.steps += 1;
        let block_size = self.block_size;
        let kv = &mut self.kv;
        self.running.retain_mut(|running| {
            if running.scheduled == 0 {
                return true;
            }
            running.computed += running.scheduled;
            running.scheduled = 0;
            running.cache_full_blocks(kv, block_size);
            if running.computed < running.prompt_len() {
                return true;
            }
            let (id, text) = generator.random_token(&mut running.request.rng);
            running.tokens.push(id);
            changes.generated_tokens += 1;
            let is_last = running.output_len() == running.request.max_tokens as usize;
            let token = Token {
                text: text.to_owned(),
                is_last,
            };
            let sent = running.request.events.send(EngineEvent::Token(token));
            if is_last || sent.is_err() {
                kv.release(&running.cached, running.uncached);
                changes.finished += 1;
                return false;
            }
            true
        });
    }
}

/// Runs `state`'s scheduler until the state is dropped. `wake` is notified when a request is
/// queued and when the state is dropped.
pub(crate) async fn run(state: Weak<MockState>, wake: Arc<Notify>) {
    // The end of the previous step. A step that follows at once starts there, so the time the
    // scheduler itself takes does not add up over a long decode.
    let mut previous_end: Option<Instant> = None;
    loop {
        let Some(engine) = state.upgrade() else {
            return;
        };
        let now = Instant::now();
        let Some(duration) = engine.plan_step() else {
            previous_end = None;
            drop(engine);
            wake.notified().await;
            continue;
        };
        let start = match previous_end {
            Some(end) if now.duration_since(end) < MAX_CATCH_UP => end,
            _ => now,
        };
        let end = start + duration;
        tokio::time::sleep_until(end).await;
        engine.complete_step();
        previous_end = Some(end);
    }
}

/// How far behind schedule the scheduler may run before it stops catching up and starts the
/// next step from the current time instead.
const MAX_CATCH_UP: Duration = Duration::from_millis(50);
