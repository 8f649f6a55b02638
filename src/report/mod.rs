//! Everything a person reads: the end-of-run summary and the per-turn log.

mod log;
mod summary;

pub use log::log_events;
pub use summary::render_summary;
