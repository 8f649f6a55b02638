//! The `clawperf` command line: parses arguments, runs the benchmark, prints the summary and
//! writes the result JSON; `clawperf report` and `clawperf compare` read result JSONs.

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::BenchArgs;
use crate::error_chain::error_chain;
use crate::exit_code;
use crate::history;
use crate::journal;
use crate::report::{self, ProgressOutput};
use crate::runner::{self, StopHandle};

/// Benchmark an OpenAI-compatible LLM server with multi-turn, long-context agent traffic.
#[derive(Debug, Parser)]
#[command(name = "clawperf", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub bench: BenchArgs,
}

/// The subcommands. Without one, `clawperf` runs a benchmark with the [`Cli`] options, as the
/// original ClawPerf did.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a Markdown report and a self-contained HTML page with charts for a result JSON
    Report(ReportArgs),
    /// Compare two result JSONs side by side, with deltas and a significance test
    Compare(CompareArgs),
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Result JSON written by a run (its --output)
    pub result: PathBuf,

    /// Folder for <name>-report.md and <name>-report.html [default: the result JSON's folder]
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Result JSON of the baseline run (A)
    pub a: PathBuf,

    /// Result JSON of the candidate run (B)
    pub b: PathBuf,

    /// Name of run A in the table [default: its path]
    #[arg(long)]
    pub label_a: Option<String>,

    /// Name of run B in the table [default: its path]
    #[arg(long)]
    pub label_b: Option<String>,

    /// Path of the Markdown comparison
    #[arg(long, default_value = "clawperf_compare.md")]
    pub output: PathBuf,
}

/// The parsed command line: a benchmark run (no subcommand) or a subcommand.
#[derive(Debug)]
pub enum Invocation {
    Bench(Box<Cli>),
    Command(Command),
}

impl Invocation {
    /// Builds the full command: the benchmark options of [`Cli`] plus the subcommands, which
    /// take none of those options.
    pub fn command() -> clap::Command {
        let bench = Cli::command();
        // Adding the subcommands replaces the description with `Command`'s doc; keep the tool's.
        let about = bench.get_about().cloned().unwrap_or_default();
        Command::augment_subcommands(bench)
            .about(about)
            .args_conflicts_with_subcommands(true)
            .subcommand_negates_reqs(true)
    }

    /// Parses `argv` (program name first).
    pub fn try_parse_from<I, T>(argv: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut command = Self::command();
        let mut matches = command.try_get_matches_from_mut(argv)?;
        let parsed = if matches.subcommand_name().is_some() {
            Command::from_arg_matches_mut(&mut matches).map(Self::Command)
        } else {
            Cli::from_arg_matches_mut(&mut matches).map(|cli| Self::Bench(Box::new(cli)))
        };
        parsed.map_err(|err| err.format(&mut command))
    }

    /// Parses the process arguments.
    pub fn try_parse() -> Result<Self, clap::Error> {
        Self::try_parse_from(std::env::args_os())
    }
}

/// Runs a subcommand and returns the process exit code.
pub fn run_command(command: Command) -> u8 {
    match command {
        Command::Report(args) => run_report(&args),
        Command::Compare(args) => run_compare(&args),
    }
}

fn run_report(args: &ReportArgs) -> u8 {
    let result = match report::load_result(&args.result) {
        Ok(result) => result,
        Err(err) => return fail(&err, exit_code::CONFIG_ERROR),
    };
    let paths = report::ReportPaths::for_result(&args.result, args.output_dir.as_deref());
    if let Err(err) = report::write_report(&result, &paths) {
        return fail(&err, exit_code::CONFIG_ERROR);
    }
    print_to_stdout(&format!(
        "Markdown report written to {}\nHTML report written to {}\n",
        paths.markdown.display(),
        paths.html.display()
    ))
}

fn run_compare(args: &CompareArgs) -> u8 {
    let (a, b) = match (report::load_result(&args.a), report::load_result(&args.b)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(err), _) | (_, Err(err)) => return fail(&err, exit_code::CONFIG_ERROR),
    };
    let label_a = args
        .label_a
        .clone()
        .unwrap_or_else(|| args.a.display().to_string());
    let label_b = args
        .label_b
        .clone()
        .unwrap_or_else(|| args.b.display().to_string());
    let comparison = report::compare_runs(&a, &b, &label_a, &label_b);
    let markdown = report::render_comparison_markdown(&comparison);
    if let Err(source) = std::fs::write(&args.output, markdown) {
        let err = report::WriteReportError {
            path: args.output.clone(),
            source,
        };
        return fail(&err, exit_code::CONFIG_ERROR);
    }
    let text = format!(
        "{}Comparison written to {}\n",
        report::render_comparison_text(&comparison),
        args.output.display()
    );
    print_to_stdout(&text)
}

/// Prints `text`. A reader that closed the pipe early (`| head`) is not an error, because the
/// files are already written.
fn print_to_stdout(text: &str) -> u8 {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => exit_code::SUCCESS,
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => exit_code::SUCCESS,
        Err(err) => fail(&err, exit_code::CONFIG_ERROR),
    }
}

/// Runs the benchmark and returns the process exit code. Errors are printed to stderr as one
/// line with their causes. The progress display draws on `display` unless `--quiet` is given.
pub async fn run(cli: Cli, display: ProgressOutput) -> u8 {
    let args = cli.bench;
    let verbose = args.verbose;
    let quiet = args.quiet;
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
    if let Err(err) = check_writable(&output) {
        eprintln!(
            "error: cannot write the result JSON to {}: {err}; pass a writable --output path",
            output.display()
        );
        return exit_code::CONFIG_ERROR;
    }
    let journal_path = config
        .journal
        .get_or_insert_with(|| journal::default_journal_path(&output))
        .clone();

    let stop = StopHandle::new();
    let signals = tokio::spawn(stop_on_signals(stop.clone(), config.interrupt_grace));
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let progress = display.start_run(config.num_users, config.max_turns, quiet);
    let logger = tokio::spawn(report::report_events(receiver, verbose, progress));
    let result = runner::run_with_stop(config, Some(sender), stop).await;
    signals.abort();
    let _ = logger.await;
    let result = match result {
        Ok(result) => result,
        Err(err) => return fail(&err, exit_code::CONFIG_ERROR),
    };

    // The result goes to disk before anything is printed, so a closed terminal or pipe
    // cannot lose it.
    if let Err(err) = result.write_json(&output) {
        eprintln!(
            "error: failed to write the result JSON to {}: {err}; the finished turns are in {}",
            output.display(),
            journal_path.display()
        );
        return exit_code::CONFIG_ERROR;
    }
    if let Err(err) = history::append_history(&result, &output) {
        return fail(&err, exit_code::CONFIG_ERROR);
    }
    let printed = format!(
        "{}\nResults written to {}\n",
        report::render_summary(&result),
        output.display()
    );
    let print_code = print_to_stdout(&printed);
    if print_code != exit_code::SUCCESS {
        return print_code;
    }

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
        let first_error = result
            .users
            .iter()
            .flat_map(|user| &user.turns)
            .find_map(|turn| turn.error.as_ref())
            .map(|error| error.message.as_str())
            .unwrap_or("none recorded");
        eprintln!(
            "error: every turn failed ({}); first error: {first_error}; all errors are in {}",
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
    eprintln!("error: {}", error_chain(err));
    code
}

/// Checks before the run that the result JSON can be written: creates the parent directories
/// and creates and removes the temporary file that `RunResult::write_json` renames into place.
fn check_writable(output: &std::path::Path) -> std::io::Result<()> {
    if let Some(parent) = output
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)?;
    }
    if output.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "it is a directory",
        ));
    }
    let mut probe = output.as_os_str().to_owned();
    probe.push(".tmp");
    let probe = PathBuf::from(probe);
    std::fs::File::create(&probe)?;
    std::fs::remove_file(&probe)
}
