//! The `#[clawperf::scenario]` attribute (not yet implemented).
