//! The `clawperf` binary end to end: a short run against the embedded mock with stderr
//! redirected, then `clawperf report` and `clawperf compare` on fixed result JSONs.

use std::path::{Path, PathBuf};
use std::process::Command;

fn clawperf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_clawperf"))
}

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/results")
        .join(name)
}

#[test]
fn redirected_run_writes_plain_stderr_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let result_path = dir.path().join("run.json");
    let output = clawperf()
        .args([
            "--endpoint",
            "mock",
            "--model",
            "mock",
            "--num-users",
            "2",
            "--max-turns",
            "2",
            "--system-prefix-tokens",
            "100",
            "--user-prefix-tokens",
            "50",
            "--input-tokens-per-turn",
            "20",
            "--output-tokens-per-turn",
            "10",
            "--mock-ttft",
            "5",
            "--mock-tpot",
            "1",
            "--seed",
            "1",
            "--verbose",
            "--output",
        ])
        .arg(&result_path)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes in stderr: {stderr:?}"
    );
    assert!(stderr.contains("turn finished"), "{stderr}");
    assert!(!stderr.contains("turns, ETA"), "no progress line: {stderr}");

    let history = std::fs::read_to_string(dir.path().join("clawperf_history.jsonl")).unwrap();
    assert_eq!(history.lines().count(), 1);
    let entry: serde_json::Value = serde_json::from_str(history.trim_end()).unwrap();
    assert_eq!(entry["summary"]["successful_turns"], 4);
    assert_eq!(entry["result_file"], result_path.display().to_string());
}

#[test]
fn report_subcommand_writes_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let output = clawperf()
        .arg("report")
        .arg(fixture_path("mock-ttft-500.json"))
        .arg("--output-dir")
        .arg(dir.path())
        .output()
        .unwrap();

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let markdown = std::fs::read_to_string(dir.path().join("mock-ttft-500-report.md")).unwrap();
    assert!(markdown.contains("## Verdict"));
    let html = std::fs::read_to_string(dir.path().join("mock-ttft-500-report.html")).unwrap();
    assert_eq!(html.matches("<svg ").count(), 6);
}

#[test]
fn report_subcommand_rejects_missing_file() {
    let output = clawperf()
        .args(["report", "/no/such/result.json"])
        .output()
        .unwrap();

    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/no/such/result.json"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn compare_subcommand_prints_ttft_change() {
    let dir = tempfile::tempdir().unwrap();
    let markdown_path = dir.path().join("compare.md");
    let output = clawperf()
        .arg("compare")
        .arg(fixture_path("mock-ttft-500.json"))
        .arg(fixture_path("mock-ttft-800.json"))
        .args(["--label-a", "ttft-500", "--label-b", "ttft-800", "--output"])
        .arg(&markdown_path)
        .output()
        .unwrap();

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let ttft_line = stdout
        .lines()
        .find(|line| line.starts_with("TTFT geometric mean"))
        .unwrap();
    assert!(ttft_line.contains("+299.69"), "{ttft_line}");
    assert!(ttft_line.contains("+59.4 %"), "{ttft_line}");
    assert!(ttft_line.contains("worse"), "{ttft_line}");
    let markdown = std::fs::read_to_string(&markdown_path).unwrap();
    assert!(
        markdown.contains("| TTFT geometric mean (ms) |"),
        "{markdown}"
    );
}
