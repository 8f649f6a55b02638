//! The `clawperf` command line: parses arguments, runs the benchmark, prints the summary and
//! writes the result JSON.

use clap::Parser;

use crate::config::BenchArgs;
use crate::exit_code;
use crate::report;
use crate::runner;

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
    let config = match tokio::task::spawn_blocking(move || args.validate()).await {
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

    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let logger = tokio::spawn(report::log_events(receiver, verbose));
    let result = runner::run(config, Some(sender)).await;
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
