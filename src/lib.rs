//! clawperf measures LLM serving stacks under multi-turn agent traffic.
//!
//! The library contains all the logic, and the `clawperf` and `clawperf-mock-server` binaries
//! only parse arguments and call into it. Nothing here installs a logger or a global allocator.
//! Signal handlers are installed only by the entry points the binaries call (`cli::run` and
//! `mock::run`), never by the modules they use.

pub mod cli;
pub mod client;
pub mod config;
pub mod content;
pub mod error_chain;
pub mod exit_code;
pub mod fd_table;
pub mod gate;
pub mod harness;
pub mod history;
pub mod journal;
pub mod mock;
pub mod openai;
pub mod preflight;
pub mod prom;
pub mod prompt_counter;
pub mod report;
pub mod result;
pub mod runner;
pub mod significance;
pub mod stats;
pub mod tokenizer;
pub mod workload;

pub use clawperf_macros::scenario;
