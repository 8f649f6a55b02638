//! The `clawperf` command line: parses arguments, runs the benchmark, prints the summary and
//! writes the result JSON.

use clap::Parser;

use crate::config::BenchArgs;
use crate::exit_code;
use crate::journal;
use crate::report;
use crate::runner::{self, StopHandle};

/// Benchmark an OpenAI-compatible LLM server with multi-turn, long-context agent traffic.
#[derive(Debug, Parser)]
#[command(name = "clawperf", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub bench: BenchArgs,
}

/// Runs the benchmark and returns the process exit code. Errors are printed to stderr as one
/// line with their causes.
pub async fn run(cli: Cli) -> u8 {
    let args = cli.bench;
    let verbose = args.verbose;
    let mut config = match tokio::task::spawn_blocking(move || args.validate()).await {
        Ok(Ok(config)) => config,
        Ok(Err(err)) => return fail(&err, exit_code::CONFIG_ERROR),
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    };
    if config.tokenizer_is_builtin {
        tracing::warn!(
            "no tokenizer found for model {:?}: using the built-in byte-level tokenizer, so token \
             counts only approximate a real model's; pass --tokenizer for exact counts",
            config.model
        );
    }
    let output = config.output.clone();
    let journal_path = config
        .journal
        .get_or_insert_with(|| journal::default_journal_path(&output))
        .clone();

    let stop = StopHandle::new();
    let signals = tokio::spawn(stop_on_signals(stop.clone(), config.interrupt_grace));
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let logger = tokio::spawn(report::log_events(receiver, verbose));
    let result = runner::run_with_stop(config, Some(sender), stop).await;
    signals.abort();
    let _ = logger.await;
    let result = match result {
        Ok(result) => result,
        Err(err) => return fail(&err, exit_code::CONFIG_ERROR),
    };

    println!("{}", report::render_summary(&result));
    if let Err(err) = result.write_json(&output) {
        eprintln!(
            "error: failed to write the result JSON to {}: {err}",
            output.display()
        );
        return exit_code::CONFIG_ERROR;
    }
    println!("Results written to {}", output.display());

    if result.summary.interrupted {
        eprintln!(
            "error: the run was interrupted; {} finished turns are in {} and {}",
            result.summary.total_turns,
            output.display(),
            journal_path.display()
        );
        return exit_code::INTERRUPTED;
    }
    if result.summary.successful_turns == 0 {
        eprintln!(
            "error: every turn failed ({}); see the errors in {}",
            describe_errors(&result.summary.errors_by_class),
            output.display()
        );
        return exit_code::ALL_TURNS_FAILED;
    }
    exit_code::SUCCESS
}

/// Stops the run on the first Ctrl-C or SIGTERM and aborts the turns in flight on the second.
async fn stop_on_signals(stop: StopHandle, grace: std::time::Duration) {
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(error) => {
            tracing::warn!(
                %error,
                "failed to listen for Ctrl-C and SIGTERM; they will end the run without a result JSON"
            );
            return;
        }
    };
    signals.next().await;
    tracing::warn!(
        grace_s = grace.as_secs_f64(),
        "interrupted: no new turns start and turns in flight get the grace period to finish \
         (--interrupt-grace); interrupt again to abort them now"
    );
    stop.stop();
    signals.next().await;
    tracing::warn!("interrupted again: aborting the turns in flight");
    stop.abort();
}

/// SIGINT (Ctrl-C) and, on Unix, SIGTERM.
struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            terminate: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?,
        })
    }

    /// Completes at the next signal.
    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            () = ctrl_c() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        ctrl_c().await;
    }
}

/// Completes at the next Ctrl-C. When Ctrl-C cannot be listened for, it logs that and never
/// completes, rather than stop the run as if Ctrl-C had been pressed.
async fn ctrl_c() {
    if let Err(error) = tokio::signal::ctrl_c().await {
        tracing::warn!(%error, "failed to listen for Ctrl-C; it will end the run without a result JSON");
        std::future::pending::<()>().await;
    }
}

fn describe_errors(errors: &std::collections::BTreeMap<String, u64>) -> String {
    errors
        .iter()
        .map(|(class, count)| format!("{count} {class}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints `error: <message>: <cause>: ...` on one line and returns `code`.
fn fail(err: &dyn std::error::Error, code: u8) -> u8 {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    eprintln!("error: {message}");
    code
}
