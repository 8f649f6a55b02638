//! The mock serving engine: an OpenAI-compatible server that simulates a serving engine's
//! prefix cache, latency and Prometheus metrics, so clawperf runs without a GPU.
//!
//! A request's prompt is rendered with the chat template and tokenized. The reply is random
//! single-token units from [`ContentGenerator`](crate::content::ContentGenerator), timed by one
//! of two latency models:
//!
//! - fixed (the default): the prompt is looked up in a vLLM-like prefix cache (`cache.rs`),
//!   the first token is due `ttft` after the request arrived, then one every `tpot`, whatever
//!   the load;
//! - engine: a continuous-batching scheduler (`scheduler.rs`) with a KV-cache block pool
//!   (`kv.rs`) queues, prefills and decodes requests in real time. TTFT thus grows with the
//!   uncached prompt tokens and the queue, and the time per output token with the batch size.
//!
//! Faults (`fault.rs`) can replace a response with an HTTP error or break its stream. The
//! counters appear on `/metrics` in the dialect of vLLM, SGLang or MindIE (`metrics.rs`), on
//! `/admin/state` (`admin.rs`), and in-process through [`MockServer::stats`].

mod admin;
mod cache;
mod config;
mod engine;
mod error;
mod fault;
mod generation;
mod handlers;
mod histogram;
mod kv;
mod metrics;
mod options;
mod response;
mod scheduler;
mod server;
mod timer;

pub use config::{
    DEFAULT_HBM_BLOCKS, DEFAULT_MAX_TOKENS, EngineArgs, FaultArgs, LatencyModelName, MockConfig,
    MockServerArgs,
};
pub use engine::{MockState, MockStats};
pub use error::MockError;
pub use fault::{FaultKind, FaultSettings};
pub use handlers::{FAULT_HEADER, MAX_REQUEST_BODY_BYTES, TPOT_HEADER, TTFT_HEADER, router};
pub use options::{EngineParams, LatencyModel, MetricsDialect};
pub use server::{MockServer, run};
