//! The gate's self-test: how often it fails an unchanged server (false alarms) and how often
//! it catches a server whose TTFT is 20 % slower (detections).
//!
//! Each comparison records a fresh baseline series and a fresh new series of the same
//! scenario on the embedded mock, and fails when any gated metric or counter regresses, as
//! `cargo test --test perf` would. The A/A series leaves the mock unchanged; the A/B series
//! multiplies the new series' TTFT by `--slowdown`.
//!
//! Run it with `scripts/gate-selftest.sh` or
//! `cargo run --example gate_selftest -- --comparisons 20`.

use std::time::Instant;

use clawperf::gate::{self, Verdict};
use clawperf::harness::{MockKnobs, Scenario, TargetSpec, Workload, measure};

/// Returns the scenario under test: `chat::single_user` of `harness/perf.rs`, with its
/// tolerances.
fn scenario() -> Scenario {
    Scenario::new(Workload {
        max_turns: 4,
        ..Workload::default()
    })
    .tolerance("itl.*", 1.0)
    .tolerance("*.p90", 0.3)
    .tolerance("*.p99", 0.5)
    .limit_at_most("ttft.p99", 2000.0)
}

struct Options {
    comparisons: usize,
    slowdown: f64,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        comparisons: 20,
        slowdown: 1.2,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("missing value after {arg}"))?;
        match arg.as_str() {
            "--comparisons" => {
                options.comparisons =
                    value
                        .parse()
                        .ok()
                        .filter(|count| *count > 0)
                        .ok_or_else(|| {
                            format!("invalid --comparisons {value}: expected an integer >= 1")
                        })?;
            }
            "--slowdown" => {
                options.slowdown = value
                    .parse()
                    .ok()
                    .filter(|factor: &f64| factor.is_finite() && *factor > 0.0)
                    .ok_or_else(|| {
                        format!("invalid --slowdown {value}: expected a factor > 0, such as 1.2")
                    })?;
            }
            _ => {
                return Err(format!(
                    "unknown option {arg}: expected --comparisons N or --slowdown F"
                ));
            }
        }
    }
    Ok(options)
}

/// Runs one comparison and returns the metrics that regressed.
async fn compare_once(scenario: &Scenario, new_ttft_scale: f64) -> Vec<String> {
    let unchanged = TargetSpec::Mock(MockKnobs::default());
    let changed = TargetSpec::Mock(MockKnobs {
        ttft_scale: new_ttft_scale,
        ..MockKnobs::default()
    });
    let baseline = measure(scenario, &unchanged)
        .await
        .expect("the baseline series runs");
    let new = measure(scenario, &changed)
        .await
        .expect("the new series runs");
    gate::compare(Some(&baseline), &new, &scenario.gates)
        .into_iter()
        .filter(|verdict| verdict.verdict == Verdict::Regressed)
        .map(|verdict| verdict.metric)
        .collect()
}

async fn series(label: &str, comparisons: usize, ttft_scale: f64) -> usize {
    let scenario = scenario();
    let mut failed = 0;
    for index in 1..=comparisons {
        let started = Instant::now();
        let regressed = compare_once(&scenario, ttft_scale).await;
        if !regressed.is_empty() {
            failed += 1;
        }
        println!(
            "{label} {index:>2}/{comparisons}: {:<6} {:>5.1} s  {}",
            if regressed.is_empty() { "pass" } else { "FAIL" },
            started.elapsed().as_secs_f64(),
            regressed.join(", ")
        );
    }
    failed
}

fn main() -> std::process::ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("error: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("failed to start the tokio runtime");
    let scenario = scenario();
    println!(
        "scenario: 1 user x {} turns, {} repetitions per side, mock TTFT {} ms, TPOT {} ms",
        scenario.workload.max_turns,
        scenario.repetitions,
        scenario.mock.ttft_ms,
        scenario.mock.tpot_ms
    );
    let comparisons = options.comparisons;
    let (false_alarms, detections) = runtime.block_on(async {
        let false_alarms = series("A/A", comparisons, 1.0).await;
        let detections = series("A/B", comparisons, options.slowdown).await;
        (false_alarms, detections)
    });
    println!(
        "false alarm rate: {false_alarms}/{comparisons} ({:.0} %) of unchanged comparisons failed",
        100.0 * false_alarms as f64 / comparisons as f64
    );
    println!(
        "detection rate:   {detections}/{comparisons} ({:.0} %) of comparisons with TTFT x{} failed",
        100.0 * detections as f64 / comparisons as f64,
        options.slowdown
    );
    std::process::ExitCode::SUCCESS
}
