//! The regression gate: compares a scenario's new repetitions with its baseline's, metric by
//! metric, and returns a verdict for each.
//!
//! # Method
//!
//! The unit of comparison is a repetition (one whole run of the workload), never a request:
//! requests within a run share the server's state, so they are not independent, while
//! repetitions that each start from the same state are.
//!
//! - **Latency and throughput** (`ttft`, `tpot`, `itl`, `e2e` at `avg`/`p50`/`p90`/`p99`, and
//!   `throughput`): each repetition contributes one value per metric. A metric regresses only
//!   when both hold, in the metric's bad direction (up for latency, down for throughput):
//!   1. the one-sided Mann–Whitney U test of the new values against the baseline's is
//!      significant at `alpha` (0.05 by default), and
//!   2. the ratio of the geometric means, new over baseline, is beyond `1 + tolerance` (or
//!      below `1 / (1 + tolerance)` for throughput).
//!
//!   An improvement is the same test in the good direction. The test alone would flag a 1 %
//!   shift that is consistent across repetitions, which on a shared machine is load, not a
//!   regression; the ratio alone would flag one slow repetition. Requiring both keeps the
//!   false alarm rate at or below `alpha` and ignores shifts smaller than the tolerance.
//! - **Counters** (input and output tokens, prefix-cache hit and query tokens, compactions,
//!   context overflows, errors): every new repetition's value must lie within the range of the
//!   baseline's values, widened by an absolute tolerance (0 by default). On the embedded mock
//!   these counters are deterministic, so the range is one value and the comparison is exact.
//! - **Limits** (`ttft.p99 <= 2000`, `error_rate <= 0`): checked on every new repetition,
//!   with or without a baseline.
//!
//! # Assumptions
//!
//! The test assumes that repetitions are independent and identically distributed within each
//! side; it detects a shift in location and needs no normal distribution. With 5 repetitions
//! per side the smallest possible p-value is 1/252, so a real shift is detected reliably; with
//! fewer than 3 per side no p-value can reach 0.05 and the verdict is "not enough data".
//!
//! # Default tolerances
//!
//! Latency metrics use 15 % and throughput 15 %: the ratio is what protects a gate on a
//! loaded CI machine, where a whole series of repetitions can be a few percent slower than the
//! series that recorded the baseline (a systematic shift that the test alone would call
//! significant). 15 % is above that load drift for latencies of tens of milliseconds and below
//! the 20 % and 30 % slowdowns the gate is meant to catch. Scenarios whose latencies are a few
//! milliseconds, where timer granularity (1 ms in tokio) is a large fraction, set wider ones.

mod compare;
mod spec;

pub use compare::{GateKind, MetricVerdict, Verdict, compare};
pub use spec::{
    CounterDirection, DEFAULT_ALPHA, DEFAULT_LATENCY_TOLERANCE, DEFAULT_THROUGHPUT_TOLERANCE,
    Gates, Limit, LimitBound, MetricDirection, RepetitionSummary, counter_direction,
    metric_direction,
};
