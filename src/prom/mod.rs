//! Server metrics over Prometheus: the text exposition parser, the per-engine name maps, the
//! prefix-cache delta and the poller that scrapes an endpoint during a run.
//!
//! - [`exposition`]: [`Exposition`], the samples and metric types of one scrape, and the exact-name
//!   sums the name maps use.
//! - [`parse`]: the text format parser, strict or lenient, and its [`ParseError`].
//! - [`backend`]: [`Backend`] and the map from vLLM, SGLang and MindIE metric names to a
//!   [`MetricsSnapshot`]. Its module docs list every name read.
//! - [`delta`]: [`PrefixCacheDelta`], the hit rate of a run as Δhits / Δqueries in tokens,
//!   summed over all series, between the start and end snapshots.
//! - [`poller`]: [`MetricsPoller`], which takes the start snapshot, scrapes periodically and
//!   takes the end snapshot, and returns a [`PollReport`].
//!
//! Nothing here installs a logger or keeps global state. Log events go through `tracing`.

pub mod backend;
pub mod delta;
pub mod exposition;
pub mod parse;
pub mod poller;

pub use backend::{Backend, MetricsSnapshot, UnknownBackendError};
pub use delta::PrefixCacheDelta;
pub use exposition::{Exposition, MetricType, Sample};
pub use parse::{LineError, ParseError};
pub use poller::{MetricsPoller, PollReport, PollerStartError};
