//! `clawperf-mock-server`: serves the mock serving engine until Ctrl-C or SIGTERM.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use clawperf::mock::{MockServerArgs, run};
use tracing_subscriber::EnvFilter;

/// Descriptors the mock server reserves room for at start, or the process limit if lower.
const MAX_CONNECTIONS_RESERVED: usize = 65_536;

fn main() -> ExitCode {
    let args = MockServerArgs::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    // Every client connection takes a descriptor. Growing the table once, before the runtime's
    // threads start, keeps the kernel from stalling a worker to grow it under load.
    clawperf::fd_table::reserve(MAX_CONNECTIONS_RESERVED);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: failed to start the tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {:#}", anyhow::Error::new(err));
            ExitCode::FAILURE
        }
    }
}
