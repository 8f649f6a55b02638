use std::io::IsTerminal;
use std::process::ExitCode;

use clawperf::cli::Invocation;
use clawperf::exit_code;
use clawperf::report::ProgressOutput;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let invocation = match Invocation::try_parse() {
        Ok(invocation) => invocation,
        Err(err) if !err.use_stderr() => {
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(exit_code::CONFIG_ERROR);
        }
    };
    // Log lines go through the progress display, which clears its bar while they print.
    let display = ProgressOutput::stderr();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(display.clone())
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let code = match invocation {
        Invocation::Bench(cli) => {
            // One connection per user, its server end too when the mock runs in-process, and
            // a margin for files, the runtime's own descriptors and reconnects.
            clawperf::fd_table::reserve(2 * cli.bench.num_users + 256);
            let runtime =
                tokio::runtime::Runtime::new().expect("failed to start the tokio runtime");
            runtime.block_on(clawperf::cli::run(*cli, display))
        }
        Invocation::Command(command) => clawperf::cli::run_command(command),
    };
    ExitCode::from(code)
}
