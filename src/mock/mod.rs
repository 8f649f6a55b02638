//! The mock serving engine: an OpenAI-compatible server that simulates a serving engine's
//! prefix cache, latency and Prometheus metrics, so clawperf runs without a GPU.
//!
//! A request's prompt is rendered with the chat template, tokenized and looked up in a
//! vLLM-like prefix cache (`cache.rs`). The reply is random single-token units from
//! [`ContentGenerator`](crate::content::ContentGenerator) on a fixed schedule: the first token
//! `ttft` after the request arrived, then one every `tpot`. The counters appear under vLLM V1's
//! names on `/metrics` and in-process through [`MockServer::stats`].
//!
//! TODO: latency does not depend on load or on the cache yet. A real engine's time to first
//! token grows with the uncached prompt tokens and with queueing, and its time per output token
//! with the batch size, so a cache regression does not yet show up as a TTFT regression here.

mod cache;
mod config;
mod engine;
mod error;
mod generation;
mod handlers;
mod metrics;
mod response;
mod server;

pub use config::{DEFAULT_HBM_BLOCKS, DEFAULT_MAX_TOKENS, MockConfig, MockServerArgs};
pub use engine::{MockState, MockStats};
pub use error::MockError;
pub use handlers::{MAX_REQUEST_BODY_BYTES, TPOT_HEADER, TTFT_HEADER, router};
pub use server::{MockServer, run};
