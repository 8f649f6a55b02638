//! Stopping a run without losing what it measured: the `clawperf` binary under SIGINT, SIGTERM
//! and SIGKILL against its embedded mock, and in-process stops with and without turns in
//! flight past the grace period.

mod scripted;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use clawperf::cli::Cli;
use clawperf::exit_code;
use clawperf::journal::{JournalEntry, read_journal};
use clawperf::result::RunResult;
use clawperf::runner::{self, StopHandle};

use scripted::{Script, done, finish, role, token, usage, wait};

/// Turns the journal must hold before the signal, so that the run is well under way.
const TURNS_BEFORE_SIGNAL: usize = 20;

/// Upper bound on waiting for the binary to reach a state or to exit.
const PROCESS_LIMIT: Duration = Duration::from_secs(120);

/// Starts `clawperf` against its embedded mock: 4 users with far more turns than the test
/// waits for, each turn about 30 ms.
fn start_mock_run(directory: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_clawperf"))
        .args([
            "--endpoint",
            "mock",
            "--model",
            "mock",
            "--seed",
            "3",
            "--num-users",
            "4",
            "--max-turns",
            "100000",
            "--system-prefix-tokens",
            "100",
            "--user-prefix-tokens",
            "20",
            "--input-tokens-per-turn",
            "20",
            "--output-tokens-per-turn",
            "10",
            "--max-context-tokens",
            "100000000",
            "--mock-ttft",
            "10",
            "--mock-tpot",
            "2",
            "--interrupt-grace",
            "10",
        ])
        .arg("--output")
        .arg(directory.join("results.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start clawperf")
}

fn journal_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

fn wait_for_journal(child: &mut Child, journal: &Path, lines: usize) {
    let start = Instant::now();
    while journal_lines(journal) < lines {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("clawperf exited early with {status}");
        }
        assert!(
            start.elapsed() < PROCESS_LIMIT,
            "the journal has fewer than {lines} lines after {PROCESS_LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} failed");
}

fn wait_for_exit(child: &mut Child) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > PROCESS_LIMIT {
            let _ = child.kill();
            panic!("clawperf did not exit within {PROCESS_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Returns each user's turn ids in journal order.
fn turn_ids_by_user(entries: &[JournalEntry]) -> BTreeMap<usize, Vec<usize>> {
    let mut ids: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for entry in entries {
        ids.entry(entry.user_id)
            .or_default()
            .push(entry.turn.turn_id);
    }
    ids
}

/// Checks that every user's turns are 1, 2, 3, ... without a gap, so no finished turn is
/// missing before the last one written.
fn assert_gapless(ids: &BTreeMap<usize, Vec<usize>>) {
    for (user_id, turns) in ids {
        let expected: Vec<usize> = (1..=turns.len()).collect();
        assert_eq!(turns, &expected, "user {user_id}'s turns");
    }
}

#[test]
fn sigint_and_sigterm_write_interrupted_result() {
    for signal_name in ["INT", "TERM"] {
        let directory = tempfile::tempdir().unwrap();
        let journal = directory.path().join("results.turns.jsonl");
        let mut child = start_mock_run(directory.path());
        wait_for_journal(&mut child, &journal, TURNS_BEFORE_SIGNAL);

        signal(&child, signal_name);
        let status = wait_for_exit(&mut child);

        assert_eq!(
            status.code(),
            Some(i32::from(exit_code::INTERRUPTED)),
            "SIG{signal_name}: exit status {status}"
        );
        let text = std::fs::read_to_string(directory.path().join("results.json")).unwrap();
        let result: RunResult = serde_json::from_str(&text).expect("a valid result JSON");
        assert!(result.summary.interrupted, "SIG{signal_name}");
        assert!(
            result.summary.total_turns >= TURNS_BEFORE_SIGNAL as u64,
            "SIG{signal_name}: {} turns",
            result.summary.total_turns
        );
        assert_eq!(
            result.summary.successful_turns, result.summary.total_turns,
            "SIG{signal_name}: a turn in flight within the grace period finishes"
        );
        for user in &result.users {
            assert_eq!(
                user.aggregate.stop_reason, "interrupted",
                "SIG{signal_name}: user {}",
                user.user_id
            );
        }

        let entries = read_journal(&journal).unwrap();
        let in_result: BTreeSet<(usize, usize)> = result
            .users
            .iter()
            .flat_map(|user| user.turns.iter().map(|turn| (user.user_id, turn.turn_id)))
            .collect();
        let in_journal: BTreeSet<(usize, usize)> = entries
            .iter()
            .map(|entry| (entry.user_id, entry.turn.turn_id))
            .collect();
        assert_eq!(
            in_journal, in_result,
            "SIG{signal_name}: the journal has the same turns as the result"
        );
    }
}

#[test]
fn sigkill_leaves_every_finished_turn_in_journal() {
    let directory = tempfile::tempdir().unwrap();
    let journal = directory.path().join("results.turns.jsonl");
    let mut child = start_mock_run(directory.path());
    wait_for_journal(&mut child, &journal, TURNS_BEFORE_SIGNAL);

    signal(&child, "KILL");
    let status = wait_for_exit(&mut child);

    assert_eq!(status.code(), None, "killed by a signal: {status}");
    assert!(
        !directory.path().join("results.json").exists(),
        "a killed run writes no result JSON"
    );
    let entries = read_journal(&journal).expect("every complete line parses");
    assert!(
        entries.len() >= TURNS_BEFORE_SIGNAL,
        "{} journal entries",
        entries.len()
    );
    assert!(entries.iter().all(|entry| entry.turn.success));
    assert_gapless(&turn_ids_by_user(&entries));
}

/// Starts a server whose replies send a role chunk, then one token `reply_ms` later.
async fn slow_server(reply_ms: u64) -> scripted::TestServer {
    Script::stream(vec![
        role(),
        wait(reply_ms),
        token("a"),
        finish("length"),
        usage(40, 1),
        done(),
    ])
    .serve()
    .await
}

async fn run_and_stop(base_url: &str, grace_s: &str, stop_after: Duration) -> RunResult {
    let argv = [
        "clawperf",
        "--endpoint",
        base_url,
        "--model",
        "test",
        "--seed",
        "1",
        "--num-users",
        "3",
        "--max-turns",
        "50",
        "--system-prefix-tokens",
        "20",
        "--user-prefix-tokens",
        "10",
        "--input-tokens-per-turn",
        "10",
        "--output-tokens-per-turn",
        "1",
        "--interrupt-grace",
        grace_s,
    ];
    let config = Cli::try_parse_from(argv).unwrap().bench.validate().unwrap();
    let stop = StopHandle::new();
    let stopper = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(stop_after).await;
        stopper.stop();
    });
    tokio::time::timeout(PROCESS_LIMIT, runner::run_with_stop(config, None, stop))
        .await
        .expect("the stopped run finishes")
        .expect("the run starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_past_grace_are_aborted() {
    let server = slow_server(30_000).await;
    let started = Instant::now();

    let result = run_and_stop(&server.base_url(), "0.2", Duration::from_millis(300)).await;

    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the run waited for the 30 s replies: {:?}",
        started.elapsed()
    );
    assert!(result.summary.interrupted);
    assert_eq!(
        result.summary.aborted_turns, 3,
        "one turn in flight per user"
    );
    assert_eq!(result.summary.total_turns, 0);
    assert_eq!(result.summary.errors_by_class, BTreeMap::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_within_grace_finish() {
    let server = slow_server(500).await;

    let result = run_and_stop(&server.base_url(), "30", Duration::from_millis(200)).await;

    assert!(result.summary.interrupted);
    assert_eq!(result.summary.aborted_turns, 0);
    assert_eq!(result.summary.total_turns, 3, "each user's turn in flight");
    assert_eq!(result.summary.successful_turns, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uninterrupted_run_is_not_marked() {
    let server = slow_server(0).await;

    let result = run_and_stop(&server.base_url(), "5", Duration::from_secs(3600)).await;

    assert!(!result.summary.interrupted);
    assert_eq!(result.summary.total_turns, 150);
}
