//! The prefix-cache hit rate of a run, from the counter change between two or more snapshots.
//!
//! Definition: the token hit rate of a tier is Δhits / Δqueries, where each Δ is the end value
//! minus the start value of a cumulative token counter summed over all series (all `engine`
//! labels). The local tier is the engine's own prefix cache, and the external tier is a KV
//! connector behind it. Counters are compared, not the engines' hit-rate gauges, because a gauge
//! describes a recent window (SGLang: the latest prefill batch) and not the whole run.
//!
//! A tier has no delta and no rate when a counter is missing or not finite in the first or last
//! snapshot. A tier also gets neither when a counter decreased between any two consecutive
//! snapshots, because that means the server restarted and the difference would be meaningless.
//! A run without queries has a delta of 0 and no rate.

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::backend::MetricsSnapshot;

/// The change of the prefix-cache token counters over a run, and the hit rate it gives.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct PrefixCacheDelta {
    /// Tokens served from the engine's own prefix cache during the run.
    pub hit_tokens_delta: Option<f64>,
    /// Tokens looked up in the engine's own prefix cache during the run.
    pub query_tokens_delta: Option<f64>,
    /// `hit_tokens_delta / query_tokens_delta`; `None` when no tokens were queried.
    pub token_hit_rate: Option<f64>,
    /// Tokens served from the external tier during the run.
    pub external_hit_tokens_delta: Option<f64>,
    /// Tokens looked up in the external tier during the run.
    pub external_query_tokens_delta: Option<f64>,
    /// `external_hit_tokens_delta / external_query_tokens_delta`; `None` when no tokens were
    /// queried.
    pub external_token_hit_rate: Option<f64>,
}

impl PrefixCacheDelta {
    /// Computes the delta from the snapshot taken before the run to the one taken after it.
    pub fn between(start: &MetricsSnapshot, end: &MetricsSnapshot) -> Self {
        Self::over(&[start, end])
    }

    /// Computes the delta from the first to the last of `snapshots`, which are in time order.
    /// The snapshots between them serve only to detect a counter reset.
    pub(crate) fn over(snapshots: &[&MetricsSnapshot]) -> Self {
        let local = TierDelta::over(
            "local",
            snapshots,
            |snapshot| snapshot.prefix_cache_hits_tokens,
            |snapshot| snapshot.prefix_cache_queries_tokens,
        );
        let external = TierDelta::over(
            "external",
            snapshots,
            |snapshot| snapshot.external_prefix_cache_hits_tokens,
            |snapshot| snapshot.external_prefix_cache_queries_tokens,
        );
        PrefixCacheDelta {
            hit_tokens_delta: local.hits,
            query_tokens_delta: local.queries,
            token_hit_rate: local.rate,
            external_hit_tokens_delta: external.hits,
            external_query_tokens_delta: external.queries,
            external_token_hit_rate: external.rate,
        }
    }
}

/// The delta of one cache tier.
#[derive(Default)]
struct TierDelta {
    hits: Option<f64>,
    queries: Option<f64>,
    rate: Option<f64>,
}

impl TierDelta {
    fn over(
        tier: &str,
        snapshots: &[&MetricsSnapshot],
        hits_of: impl Fn(&MetricsSnapshot) -> Option<f64>,
        queries_of: impl Fn(&MetricsSnapshot) -> Option<f64>,
    ) -> Self {
        let hits = CounterDelta::over(snapshots, hits_of);
        let queries = CounterDelta::over(snapshots, queries_of);

        for (counter, delta) in [("hits", &hits), ("queries", &queries)] {
            if let CounterDelta::Reset { before, after } = delta {
                warn!(
                    tier,
                    counter,
                    before,
                    after,
                    "prefix-cache counter decreased during the run, which usually means the \
                     server restarted. No delta and no hit rate are reported for this tier"
                );
            }
        }
        if matches!(hits, CounterDelta::Reset { .. })
            || matches!(queries, CounterDelta::Reset { .. })
        {
            return TierDelta::default();
        }

        let hits = hits.value();
        let queries = queries.value();
        let rate = match (hits, queries) {
            (Some(hits), Some(queries)) if queries > 0.0 => Some(hits / queries),
            _ => None,
        };
        TierDelta {
            hits,
            queries,
            rate,
        }
    }
}

/// The change of one counter over a sequence of snapshots.
enum CounterDelta {
    /// The counter is missing or not finite in the first or the last snapshot.
    Unknown,
    /// The counter went from `before` to a smaller `after` between two consecutive snapshots.
    Reset {
        before: f64,
        after: f64,
    },
    Change(f64),
}

impl CounterDelta {
    fn over(
        snapshots: &[&MetricsSnapshot],
        value_of: impl Fn(&MetricsSnapshot) -> Option<f64>,
    ) -> Self {
        let values: Vec<Option<f64>> = snapshots
            .iter()
            .map(|snapshot| value_of(snapshot))
            .collect();

        // A snapshot that lacks the counter (say, a scrape cut short) is skipped, so the values
        // on either side of it are still compared.
        let present: Vec<f64> = values.iter().flatten().copied().collect();
        if let Some(pair) = present.windows(2).find(|pair| pair[1] < pair[0]) {
            return CounterDelta::Reset {
                before: pair[0],
                after: pair[1],
            };
        }

        match (
            values.first().copied().flatten(),
            values.last().copied().flatten(),
        ) {
            (Some(first), Some(last)) if first.is_finite() && last.is_finite() => {
                CounterDelta::Change(last - first)
            }
            _ => CounterDelta::Unknown,
        }
    }

    fn value(&self) -> Option<f64> {
        match self {
            CounterDelta::Change(change) => Some(*change),
            CounterDelta::Unknown | CounterDelta::Reset { .. } => None,
        }
    }
}
