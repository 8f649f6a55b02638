//! Reports of a run: terminal lines, JUnit XML, the Markdown comparison and the
//! per-scenario result JSON, all built from [`ScenarioReport`](super::judge::ScenarioReport)s.
//!
//! Under cargo-nextest every scenario runs in its own process, so each process stores its
//! report in `target/clawperf/runs/<NEXTEST_RUN_ID>/` and rebuilds the JUnit file and the
//! Markdown summary from all reports of the run, which leaves them complete after the last
//! process.

mod junit;
mod markdown;
mod store;
mod terminal;

pub use junit::write_junit;
pub use markdown::render_markdown;
pub use store::{ReportStore, StoreError};
pub use terminal::{describe_verdict, verdict_line};
