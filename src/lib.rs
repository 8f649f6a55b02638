//! clawperf measures LLM serving stacks under multi-turn agent traffic.
//!
//! The library holds everything; the `clawperf` and `clawperf-mock-server` binaries only parse
//! arguments and call into it. Nothing here installs a logger, a signal handler or a global
//! allocator: those belong to the binaries.

pub mod cli;
pub mod client;
pub mod config;
pub mod content;
pub mod error_chain;
pub mod exit_code;
pub mod gate;
pub mod harness;
pub mod history;
pub mod journal;
pub mod mock;
pub mod openai;
pub mod preflight;
pub mod prom;
pub mod report;
pub mod result;
pub mod runner;
pub mod significance;
pub mod stats;
pub mod tokenizer;
pub mod workload;

pub use clawperf_macros::scenario;
