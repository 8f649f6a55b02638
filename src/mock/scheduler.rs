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
        engine.timer().sleep_until(end).await;
        engine.complete_step();
        previous_end = Some(end);
    }
}

/// How far behind schedule the scheduler may run before it stops catching up and starts the
/// next step from the current time instead.
const MAX_CATCH_UP: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::Tokenizer;

    const BLOCK: usize = 16;

    fn params() -> EngineParams {
        EngineParams {
            max_num_seqs: 4,
            max_num_batched_tokens: 100,
            prefill_us_per_token: 10.0,
            external_load_us_per_token: 1.0,
            decode_step_base_us: 1000.0,
            decode_step_us_per_seq: 100.0,
            jitter: 0.0,
        }
    }

    fn scheduler(params: EngineParams, blocks: usize) -> Scheduler {
        Scheduler::new(params, BLOCK, KvCache::new(BLOCK, blocks, 0, true), 3)
    }

    /// Queues a request of `prompt_len` distinct tokens and returns its event receiver.
    fn enqueue(
        scheduler: &mut Scheduler,
        first_token: u32,
        prompt_len: usize,
        max_tokens: u32,
    ) -> mpsc::UnboundedReceiver<EngineEvent> {
        let prompt: Vec<u32> = (first_token..first_token + prompt_len as u32).collect();
        let (events, receiver) = mpsc::unbounded_channel();
        scheduler.enqueue(EngineRequest {
            prompt_hashes: hash_blocks(&prompt, BLOCK, None),
            prompt,
            max_tokens,
            rng: StdRng::seed_from_u64(0),
            events,
        });
        receiver
    }

    fn tokens_received(receiver: &mut mpsc::UnboundedReceiver<EngineEvent>) -> usize {
        let mut tokens = 0;
        while let Ok(event) = receiver.try_recv() {
            if let EngineEvent::Token(_) = event {
                tokens += 1;
            }
        }
        tokens
    }

    /// Plans and completes one step; returns its duration in microseconds.
    fn step(scheduler: &mut Scheduler, generator: &ContentGenerator) -> Option<f64> {
        let mut changes = StepChanges::default();
        let duration = scheduler.plan_step(&mut changes)?;
        scheduler.complete_step(generator, &mut changes);
        Some(duration.as_secs_f64() * 1e6)
    }

    fn generator() -> ContentGenerator {
        ContentGenerator::new(Tokenizer::builtin()).unwrap()
    }

    fn assert_close(actual: f64, expected: f64) {
        assert!(
            (actual - expected).abs() < 1e-6,
            "{actual} µs, expected {expected}"
        );
    }

    #[test]
    fn long_prompt_prefills_in_chunks() {
        let generator = generator();
        let mut scheduler = scheduler(params(), 64);
        let mut receiver = enqueue(&mut scheduler, 0, 250, 2);

        assert_close(
            step(&mut scheduler, &generator).unwrap(),
            1100.0 + 100.0 * 10.0,
        );
        assert_close(
            step(&mut scheduler, &generator).unwrap(),
            1100.0 + 100.0 * 10.0,
        );
        assert_eq!(tokens_received(&mut receiver), 0, "prompt not complete yet");
        assert_close(
            step(&mut scheduler, &generator).unwrap(),
            1100.0 + 50.0 * 10.0,
        );
        assert_eq!(
            tokens_received(&mut receiver),
            1,
            "first token after the last chunk"
        );
        assert_close(step(&mut scheduler, &generator).unwrap(), 1100.0);
        assert_eq!(tokens_received(&mut receiver), 1);
        assert_eq!(step(&mut scheduler, &generator), None, "finished");
        assert_eq!(scheduler.kv().blocks_in_use(), 0);
    }

    #[test]
    fn decode_step_grows_with_batch() {
        let generator = generator();
        let mut scheduler = scheduler(params(), 64);
        let _receivers: Vec<_> = (0..3)
            .map(|index| enqueue(&mut scheduler, index * 1000, 10, 5))
            .collect();
        assert_close(
            step(&mut scheduler, &generator).unwrap(),
            1000.0 + 300.0 + 300.0,
        );
        assert_close(step(&mut scheduler, &generator).unwrap(), 1000.0 + 300.0);
        assert_eq!(scheduler.running_len(), 3);
    }

    #[test]
    fn request_beyond_max_num_seqs_waits() {
        let generator = generator();
        let mut scheduler = scheduler(params(), 64);
        let _receivers: Vec<_> = (0..5)
            .map(|index| enqueue(&mut scheduler, index * 1000, 10, 5))
            .collect();
        step(&mut scheduler, &generator);
        assert_eq!(scheduler.running_len(), 4);
        assert_eq!(scheduler.waiting_len(), 1);
    }

    #[test]
    fn request_waits_for_kv_blocks() {
        let generator = generator();
        let mut scheduler = scheduler(params(), 4);
        // Each request holds ceil((40 + 9) / 16) = 4 blocks, the whole cache.
        let mut first = enqueue(&mut scheduler, 0, 40, 10);
        let mut second = enqueue(&mut scheduler, 1000, 40, 10);
        step(&mut scheduler, &generator);
        assert_eq!(scheduler.running_len(), 1);
        assert_eq!(scheduler.waiting_len(), 1);
        for _ in 0..9 {
            step(&mut scheduler, &generator);
        }
        assert_eq!(tokens_received(&mut first), 10);
        step(&mut scheduler, &generator);
        assert_eq!(
            scheduler.waiting_len(),
            0,
            "admitted once the first request ended"
        );
        assert_eq!(tokens_received(&mut second), 1);
    }

    #[test]
    fn closed_request_is_dropped() {
        let generator = generator();
        let mut scheduler = scheduler(params(), 64);
        drop(enqueue(&mut scheduler, 0, 10, 5));
        let mut changes = StepChanges::default();
        assert_eq!(scheduler.plan_step(&mut changes), None);
        assert_eq!(changes.abandoned, 1);

        let receiver = enqueue(&mut scheduler, 0, 10, 5);
        step(&mut scheduler, &generator);
        drop(receiver);
        let mut changes = StepChanges::default();
        scheduler.plan_step(&mut changes);
        scheduler.complete_step(&generator, &mut changes);
        assert_eq!(
            changes.finished, 1,
            "a running request ends when its client goes away"
        );
        assert_eq!(scheduler.kv().blocks_in_use(), 0);
    }

    #[test]
    fn jitter_is_seeded_and_bounded() {
        let durations = || {
            let generator = generator();
            let mut scheduler = scheduler(
                EngineParams {
                    jitter: 0.1,
                    ..params()
                },
                64,
            );
            let _receiver = enqueue(&mut scheduler, 0, 10, 20);
            (0..20)
                .map(|_| step(&mut scheduler, &generator).unwrap())
                .collect::<Vec<_>>()
        };
        let first = durations();
        assert_eq!(first, durations());
        for duration in &first[1..] {
            assert!((990.0..=1210.0).contains(duration), "{duration} µs");
        }
        assert!(
            first[1..]
                .iter()
                .any(|duration| (duration - 1100.0).abs() > 1.0)
        );
    }
}
