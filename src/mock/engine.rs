//! The engine state that all requests share: the prefix cache or the scheduler with its KV
//! cache, the request gauges and the token counters. They sit behind one mutex, so a snapshot
//! is always consistent: hits never exceed queries, and running plus waiting equals the
//! requests in flight. The mutex is held only for counter updates, cache operations and scheduling,
//! never across an `.await`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use super::MockError;
use super::cache::{BlockHash, CacheCounters, CacheHit, PrefixCache, hash_blocks};
use super::config::MockConfig;
use super::fault::FaultInjector;
use super::histogram::LatencyHistograms;
use super::kv::KvCache;
use super::options::LatencyModel;
use super::scheduler::{self, EngineRequest, Scheduler, StepChanges};
use super::timer::PreciseTimer;
use crate::content::ContentGenerator;
use crate::openai::ChatMessage;
use crate::tokenizer::EncodeError;

/// The model name reported when the config sets no served model name.
const FALLBACK_MODEL_NAME: &str = "mock";

/// Counters and gauges of a mock engine at one moment; token counts are in tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MockStats {
    /// Chat completions admitted: requests that passed validation, counted before tokenizing.
    pub requests: u64,
    /// Requests still generating: with the fixed model those past their first token, with the
    /// engine model those the scheduler admitted, prefilling ones included.
    pub running: u64,
    /// Requests not running yet: with the fixed model those whose first token is not yet due,
    /// with the engine model those being tokenized or queued for admission.
    pub waiting: u64,
    pub prefix_cache_queries: u64,
    pub prefix_cache_hits: u64,
    pub external_prefix_cache_queries: u64,
    pub external_prefix_cache_hits: u64,
    /// Prompt tokens of requests that reached their first token.
    pub prompt_tokens_total: u64,
    /// Tokens generated, counted as each one is emitted.
    pub generation_tokens_total: u64,
    /// Blocks stored in the HBM tier.
    pub hbm_cached_blocks: u64,
    /// Blocks stored in the external tier.
    pub external_cached_blocks: u64,
    /// Blocks that running requests occupy; `vllm:kv_cache_usage_perc` divides them by the HBM
    /// capacity. The fixed latency model counts prompt blocks only.
    pub kv_blocks_in_use: u64,
    /// Requests admitted that have not ended yet; always `running + waiting`.
    pub in_flight: u64,
    /// Cached blocks evicted from the HBM tier; only the engine latency model counts them.
    pub hbm_evictions: u64,
    /// Faults injected so far, HTTP errors and stream faults alike.
    pub faults_injected: u64,
    /// Engine steps run so far; 0 with the fixed latency model.
    pub engine_steps: u64,
}

/// A prompt after tokenizing and cache lookup.
#[derive(Debug)]
pub(crate) struct Prompt {
    /// Token ids of the rendered chat template.
    pub ids: Vec<u32>,
    /// Hashes of the prompt's full blocks.
    pub hashes: Vec<BlockHash>,
    pub hit: CacheHit,
}

/// The state shared by a mock engine's handlers: configuration, output generator, cache and
/// counters. [`router`](super::router) serves it.
pub struct MockState {
    config: MockConfig,
    model_name: String,
    generator: ContentGenerator,
    started_at: SystemTime,
    next_request: AtomicU64,
    /// Kept outside the mutex because it changes once per token.
    generation_tokens: AtomicU64,
    engine: Mutex<Engine>,
    faults: FaultInjector,
    histograms: LatencyHistograms,
    /// Wakes the scheduler task when a request is queued or the state is dropped.
    wake: Arc<Notify>,
    scheduler_started: AtomicBool,
    /// Times tokens and engine steps to tens of microseconds.
    timer: PreciseTimer,
}

#[derive(Debug)]
struct Engine {
    /// The prefix cache of the fixed latency model; unused by the engine model.
    cache: PrefixCache,
    /// The scheduler of the engine latency model.
    scheduler: Option<Scheduler>,
    requests: u64,
    /// Requests that ended: finished, failed or abandoned by their client.
    ended: u64,
    waiting: u64,
    running: u64,
    prompt_tokens: u64,
    blocks_in_use: u64,
}

impl MockState {
    /// Builds the engine for `config`. This blocks while the output generator scans the
    /// tokenizer's vocabulary (under a second for Qwen3's 150k tokens in a debug build), so
    /// async callers should run it on a blocking thread.
    pub fn new(config: MockConfig) -> Result<Self, MockError> {
        if config.block_size == 0 {
            return Err(MockError::InvalidBlockSize);
        }
        let generator = ContentGenerator::new(config.tokenizer.clone()).map_err(|source| {
            MockError::Content {
                tokenizer: config.tokenizer.source().to_string(),
                source,
            }
        })?;
        let cache = PrefixCache::new(
            config.block_size,
            config.hbm_blocks,
            config.external_blocks,
            config.prefix_caching,
        );
        let scheduler = match config.latency_model {
            LatencyModel::Fixed => None,
            LatencyModel::Engine(params) => {
                params.validate().map_err(MockError::InvalidEngine)?;
                let kv = KvCache::new(
                    config.block_size,
                    config.hbm_blocks,
                    config.external_blocks,
                    config.prefix_caching,
                );
                Some(Scheduler::new(params, config.block_size, kv, config.seed))
            }
        };
        config.faults.validate().map_err(MockError::InvalidFaults)?;
        let model_name = config
            .served_model_name
            .clone()
            .unwrap_or_else(|| FALLBACK_MODEL_NAME.to_owned());
        let faults = FaultInjector::new(config.faults, config.seed);
        Ok(Self {
            config,
            model_name,
            generator,
            started_at: SystemTime::now(),
            next_request: AtomicU64::new(0),
            generation_tokens: AtomicU64::new(0),
            engine: Mutex::new(Engine {
                cache,
                scheduler,
                requests: 0,
                ended: 0,
                waiting: 0,
                running: 0,
                prompt_tokens: 0,
                blocks_in_use: 0,
            }),
            faults,
            histograms: LatencyHistograms::default(),
            wake: Arc::new(Notify::new()),
            scheduler_started: AtomicBool::new(false),
            timer: PreciseTimer::default(),
        })
    }

    /// Starts the scheduler task of the engine latency model, once; later calls and the fixed
    /// model do nothing. Must be called inside a Tokio runtime.
    pub(crate) fn start_scheduler(self: &Arc<Self>) {
        if !self.is_engine_model() || self.scheduler_started.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(scheduler::run(Arc::downgrade(self), Arc::clone(&self.wake)));
    }

    /// Returns the timer that token deadlines and engine steps sleep on.
    pub(crate) fn timer(&self) -> &PreciseTimer {
        &self.timer
    }

    /// Returns whether latency comes from the engine model rather than a fixed schedule.
    pub fn is_engine_model(&self) -> bool {
        matches!(self.config.latency_model, LatencyModel::Engine(_))
    }

    pub fn config(&self) -> &MockConfig {
        &self.config
    }

    /// Returns the served model name, or `mock` when any name is accepted.
    pub fn model_name(&self) -> &str {
        &self.model_name
    }

    /// Returns when the engine was built; the `_created` metrics report it.
    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }

    /// Returns a consistent snapshot of the counters and gauges.
    pub fn stats(&self) -> MockStats {
        let engine = self.engine();
        let (counters, hbm_cached, external_cached, in_use, evictions, steps): (
            CacheCounters,
            usize,
            usize,
            u64,
            u64,
            u64,
        ) = match &engine.scheduler {
            None => (
                engine.cache.counters(),
                engine.cache.hbm_len(),
                engine.cache.external_len(),
                engine.blocks_in_use,
                0,
                0,
            ),
            Some(scheduler) => {
                let kv = scheduler.kv();
                (
                    kv.counters(),
                    kv.cached_blocks(),
                    kv.external_len(),
                    kv.blocks_in_use() as u64,
                    kv.evictions(),
                    scheduler.steps(),
                )
            }
        };
        MockStats {
            requests: engine.requests,
            running: engine.running,
            waiting: engine.waiting,
            prefix_cache_queries: counters.queries,
            prefix_cache_hits: counters.hits,
            external_prefix_cache_queries: counters.external_queries,
            external_prefix_cache_hits: counters.external_hits,
            prompt_tokens_total: engine.prompt_tokens,
            generation_tokens_total: self.generation_tokens.load(Ordering::Relaxed),
            hbm_cached_blocks: hbm_cached as u64,
            external_cached_blocks: external_cached as u64,
            kv_blocks_in_use: in_use,
            in_flight: engine.requests - engine.ended,
            hbm_evictions: evictions,
            faults_injected: self.faults.injected(),
            engine_steps: steps,
        }
    }

    /// Returns the scheduler's queue lengths and KV-cache occupancy, or `None` with the fixed
    /// latency model.
    pub(crate) fn scheduler_state(&self) -> Option<SchedulerState> {
        let engine = self.engine();
        let scheduler = engine.scheduler.as_ref()?;
        let kv = scheduler.kv();
        Some(SchedulerState {
            queued: scheduler.waiting_len() as u64,
            running: scheduler.running_len() as u64,
            blocks_total: kv.capacity() as u64,
            blocks_in_use: kv.blocks_in_use() as u64,
            blocks_evictable: kv.evictable_blocks() as u64,
        })
    }

    pub(crate) fn faults(&self) -> &FaultInjector {
        &self.faults
    }

    pub(crate) fn histograms(&self) -> &LatencyHistograms {
        &self.histograms
    }

    /// Returns the fraction of the HBM tier that running requests occupy, from 0 to 1.
    pub fn kv_cache_usage(&self, stats: &MockStats) -> f64 {
        let capacity = self.config.hbm_blocks.max(1) as f64;
        (stats.kv_blocks_in_use as f64 / capacity).min(1.0)
    }

    pub(crate) fn generator(&self) -> &ContentGenerator {
        &self.generator
    }

    /// Admits a request: counts it and adds it to the waiting gauge. Returns its index, which
    /// seeds its output.
    pub(crate) fn admit(&self) -> u64 {
        let mut engine = self.engine();
        engine.requests += 1;
        engine.waiting += 1;
        self.next_request.fetch_add(1, Ordering::Relaxed)
    }

    /// Removes a request that ends before its first token from the waiting gauge.
    pub(crate) fn abandon(&self) {
        let mut engine = self.engine();
        engine.waiting -= 1;
        engine.ended += 1;
    }

    /// Tokenizes `messages` with the chat template and hashes the full blocks, without a cache
    /// lookup: the engine model looks prompts up when it schedules them. This is CPU work of up
    /// to tens of milliseconds for 100k-token prompts; run it on a blocking thread.
    pub(crate) fn encode_prompt(
        &self,
        messages: &[ChatMessage],
    ) -> Result<(Vec<u32>, Vec<BlockHash>), EncodeError> {
        let ids = self.config.tokenizer.encode_chat(messages)?;
        let hashes = hash_blocks(&ids, self.config.block_size, None);
        Ok((ids, hashes))
    }

    /// Queues a request for the engine model's scheduler. It stays in the waiting gauge, which
    /// [`admit`](Self::admit) added it to, until the scheduler admits it.
    pub(crate) fn submit(&self, request: EngineRequest) {
        let mut engine = self.engine();
        let scheduler = engine
            .scheduler
            .as_mut()
            .expect("requests are submitted only with the engine latency model");
        scheduler.enqueue(request);
        drop(engine);
        self.wake.notify_one();
    }

    /// Returns the HBM capacity in blocks, which bounds the blocks one request may hold.
    pub(crate) fn hbm_capacity(&self) -> usize {
        self.config.hbm_blocks
    }

    /// Plans the scheduler's next step; `None` when it has nothing to run.
    pub(crate) fn plan_step(&self) -> Option<Duration> {
        let mut engine = self.engine();
        let mut changes = StepChanges::default();
        let duration = engine.scheduler.as_mut()?.plan_step(&mut changes);
        engine.apply(&changes);
        duration
    }

    /// Completes the step that [`plan_step`](Self::plan_step) planned and sends its tokens.
    pub(crate) fn complete_step(&self) {
        let mut engine = self.engine();
        let mut changes = StepChanges::default();
        if let Some(scheduler) = engine.scheduler.as_mut() {
            scheduler.complete_step(&self.generator, &mut changes);
        }
        engine.apply(&changes);
        self.generation_tokens
            .fetch_add(changes.generated_tokens, Ordering::Relaxed);
    }

    /// Tokenizes `messages` with the chat template, hashes the full blocks and looks them up,
    /// counting the query. This is CPU work of up to tens of milliseconds for 100k-token
    /// prompts; run it on a blocking thread.
    pub(crate) fn look_up_prompt(&self, messages: &[ChatMessage]) -> Result<Prompt, EncodeError> {
        let ids = self.config.tokenizer.encode_chat(messages)?;
        let hashes = hash_blocks(&ids, self.config.block_size, None);
        let hit = self.engine().cache.lookup(&hashes, ids.len());
        Ok(Prompt { ids, hashes, hit })
    }

    /// Moves a request from waiting to running when its first token is due: counts its prompt
    /// tokens, holds its prompt's blocks and caches them. Returns the number of blocks held.
    pub(crate) fn start_running(&self, prompt: &Prompt) -> u64 {
        let held_blocks = prompt.ids.len().div_ceil(self.config.block_size) as u64;
        let mut engine = self.engine();
        engine.waiting -= 1;
        engine.running += 1;
        engine.prompt_tokens += prompt.ids.len() as u64;
        engine.blocks_in_use += held_blocks;
        engine.cache.insert(&prompt.hashes, prompt.hit.blocks());
        held_blocks
    }

    pub(crate) fn count_generated_token(&self) {
        self.generation_tokens.fetch_add(1, Ordering::Relaxed);
    }

    /// Ends a running request that generated `output`: releases its blocks and caches the
    /// blocks its output completed. Like vLLM, the engine has computed KV for the prompt and
    /// every generated token except the last sampled one, so the cached sequence is
    /// `prompt ++ output[..n - 1]`, full blocks only.
    pub(crate) fn finish_running(&self, prompt: &Prompt, output: &[u32], held_blocks: u64) {
        let block_size = self.config.block_size;
        let computed_output = &output[..output.len().saturating_sub(1)];
        let mut tail = prompt.ids[prompt.hashes.len() * block_size..].to_vec();
        tail.extend_from_slice(computed_output);
        let mut hashes = prompt.hashes.clone();
        hashes.extend(hash_blocks(
            &tail,
            block_size,
            prompt.hashes.last().copied(),
        ));

        let mut engine = self.engine();
        engine.running -= 1;
        engine.ended += 1;
        engine.blocks_in_use -= held_blocks;
        engine.cache.insert(&hashes, prompt.hashes.len());
    }

    fn engine(&self) -> MutexGuard<'_, Engine> {
        // Only a bug can panic inside these short critical sections; the counters stay
        // usable, so a poisoned lock does not stop the server.
        self.engine.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Engine {
    fn apply(&mut self, changes: &StepChanges) {
        self.waiting -= changes.admitted + changes.abandoned;
        self.running += changes.admitted;
        self.running -= changes.finished;
        self.ended += changes.abandoned + changes.finished;
        self.prompt_tokens += changes.prompt_tokens;
    }
}

impl Drop for MockState {
    /// Lets an idle scheduler task notice that the state is gone and end.
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

/// The engine model's scheduler at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(crate) struct SchedulerState {
    /// Requests tokenized and queued for admission.
    pub queued: u64,
    pub running: u64,
    pub blocks_total: u64,
    /// Blocks running requests hold.
    pub blocks_in_use: u64,
    /// Cached blocks no request holds, which count as free.
    pub blocks_evictable: u64,
}

impl std::fmt::Debug for MockState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockState")
            .field("model_name", &self.model_name)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
