//! Server metrics over Prometheus: the text exposition parser, the per-engine name maps and the
//! prefix-cache delta.
//!
//! - [`exposition`]: [`Exposition`], the samples and metric types of one scrape, and the exact-name
//!   sums the name maps use.
//! - [`parse`]: the text format parser, strict or lenient, and its [`ParseError`].
//! - [`backend`]: [`Backend`] and the map from vLLM, SGLang and MindIE metric names to a
//!   [`MetricsSnapshot`]. Its module docs list every name read.
//! - [`delta`]: [`PrefixCacheDelta`], the hit rate of a run as Δhits / Δqueries in tokens,
//!   summed over all series, between the start and end snapshots.
//!
//! Nothing here installs a logger or keeps global state. Log events go through `tracing`.

pub mod backend;
pub mod delta;
pub mod exposition;
pub mod parse;

pub use backend::{Backend, MetricsSnapshot, UnknownBackendError};
pub use delta::PrefixCacheDelta;
pub use exposition::{Exposition, MetricType, Sample};
pub use parse::{LineError, ParseError};
