//! The outputs people read, rendered from fixed result JSONs: the summary table, the Markdown
//! and HTML reports, the comparison of two runs, the history file and the command line.
//!
//! The fixtures under `tests/data/results/` are two 4-user × 6-turn runs against the embedded
//! mock, with compactions, identical but for `--mock-ttft` 500 and 800 ms.

use std::path::{Path, PathBuf};

use clawperf::cli::{Command, Invocation};
use clawperf::history::{self, HistoryEntry};
use clawperf::report::{self, LoadError};
use clawperf::result::RunResult;

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/results")
        .join(name)
}

fn fixture(name: &str) -> RunResult {
    report::load_result(&fixture_path(name)).expect("the fixture is a valid result JSON")
}

#[test]
fn summary_table_snapshot() {
    let result = fixture("mock-ttft-500.json");
    insta::assert_snapshot!(report::render_summary(&result));
}

#[test]
fn summary_lists_failures_by_class() {
    let mut result = fixture("mock-ttft-500.json");
    result
        .summary
        .errors_by_class
        .insert("timeout".to_owned(), 2);
    let summary = report::render_summary(&result);
    assert!(summary.contains("Failed: timeout"), "{summary}");
}

#[test]
fn markdown_report_snapshot() {
    let result = fixture("mock-ttft-500.json");
    let document = report::build_document(&result);
    insta::assert_snapshot!(report::render_markdown(&document));
}

#[test]
fn html_report_is_self_contained() {
    let result = fixture("mock-ttft-500.json");
    let html = report::render_html(&report::build_document(&result));

    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<svg ").count(), 6, "one SVG per chart");
    assert!(
        !html.contains("no data"),
        "every chart of the fixture has data"
    );
    assert!(!html.contains("<script"), "no scripts");
    assert!(!html.contains(" src="), "no external resources");
    assert!(!html.contains(" href="), "no links to fetch");
    // The only URL is the SVG namespace, which browsers never fetch.
    let urls = html.matches("http://").count() + html.matches("https://").count();
    let namespaces = html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count();
    let endpoint_urls = html.matches("http://127.0.0.1").count();
    assert_eq!(urls, namespaces + endpoint_urls);
}

#[test]
fn html_marks_compactions() {
    let result = fixture("mock-ttft-500.json");
    let html = report::render_html(&report::build_document(&result));
    assert!(html.contains(">compaction</text>"), "legend of the rings");
    assert!(
        html.contains(r#"r="6" fill="none""#),
        "rings on compacted turns"
    );
}

#[test]
fn report_files_are_written_beside_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let result_path = dir.path().join("run.json");
    std::fs::copy(fixture_path("mock-ttft-500.json"), &result_path).unwrap();

    let paths = report::ReportPaths::for_result(&result_path, None);
    report::write_report(&fixture("mock-ttft-500.json"), &paths).unwrap();

    assert_eq!(paths.markdown, dir.path().join("run-report.md"));
    assert_eq!(paths.html, dir.path().join("run-report.html"));
    assert!(
        std::fs::read_to_string(&paths.markdown)
            .unwrap()
            .starts_with("# clawperf report")
    );
    assert!(
        std::fs::read_to_string(&paths.html)
            .unwrap()
            .contains("<svg ")
    );
}

#[test]
fn compare_shows_ttft_change_with_sign() {
    let a = fixture("mock-ttft-500.json");
    let b = fixture("mock-ttft-800.json");
    let comparison = report::compare_runs(&a, &b, "ttft-500", "ttft-800");

    let ttft = &comparison.rows[0];
    assert_eq!(ttft.name, "TTFT geometric mean");
    assert_eq!(ttft.samples, Some((24, 24)));
    let delta = ttft.delta().unwrap();
    assert!((295.0..305.0).contains(&delta), "delta {delta}");
    let percent = ttft.percent_change().unwrap();
    assert!((58.0..61.0).contains(&percent), "percent {percent}");
    assert!(ttft.p_value.unwrap() < 0.001);
    assert_eq!(ttft.direction_word(), "worse");

    let reverse = report::compare_runs(&b, &a, "ttft-800", "ttft-500");
    assert!(reverse.rows[0].delta().unwrap() < -295.0);
    assert_eq!(reverse.rows[0].direction_word(), "better");
    assert!(reverse.rows[0].p_value.unwrap() > 0.99);
}

#[test]
fn compare_text_snapshot() {
    let a = fixture("mock-ttft-500.json");
    let b = fixture("mock-ttft-800.json");
    let comparison = report::compare_runs(&a, &b, "ttft-500", "ttft-800");
    insta::assert_snapshot!(report::render_comparison_text(&comparison));
}

#[test]
fn compare_without_enough_samples_has_no_p_value() {
    let a = fixture("mock-ttft-500.json");
    let mut b = fixture("mock-ttft-800.json");
    // Keep two successful turns in B.
    b.users.truncate(1);
    b.users[0].turns.truncate(2);

    let comparison = report::compare_runs(&a, &b, "a", "b");
    let ttft = &comparison.rows[0];
    assert_eq!(ttft.samples, Some((24, 2)));
    assert_eq!(ttft.p_value, None);
    assert!(ttft.delta().unwrap() > 0.0, "the delta is still shown");
    let text = report::render_comparison_text(&comparison);
    assert!(text.contains("n<3"), "{text}");
}

#[test]
fn load_rejects_bad_files_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let malformed = dir.path().join("malformed.json");
    std::fs::write(&malformed, "{ not json").unwrap();
    let other_schema = dir.path().join("other-schema.json");
    std::fs::write(&other_schema, r#"{"schema_version": 2, "summary": {}}"#).unwrap();
    let no_schema = dir.path().join("no-schema.json");
    std::fs::write(&no_schema, r#"{"summary": {}}"#).unwrap();
    let wrong_layout = dir.path().join("wrong-layout.json");
    std::fs::write(&wrong_layout, r#"{"schema_version": 1, "summary": {}}"#).unwrap();

    type Case<'a> = (&'a Path, fn(&LoadError) -> bool);
    let cases: [Case; 5] = [
        (&missing, |err| matches!(err, LoadError::Read { .. })),
        (&malformed, |err| matches!(err, LoadError::Json { .. })),
        (&other_schema, |err| {
            matches!(err, LoadError::SchemaVersion { .. })
        }),
        (&no_schema, |err| {
            matches!(err, LoadError::MissingSchemaVersion { .. })
        }),
        (&wrong_layout, |err| matches!(err, LoadError::Layout { .. })),
    ];
    for (path, is_expected) in cases {
        let err = report::load_result(path).unwrap_err();
        assert!(is_expected(&err), "{}: {err:?}", path.display());
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
}

#[test]
fn history_appends_one_line_per_run() {
    let dir = tempfile::tempdir().unwrap();
    let result_path = dir.path().join("nightly").join("results.json");
    std::fs::create_dir_all(result_path.parent().unwrap()).unwrap();
    let a = fixture("mock-ttft-500.json");
    let b = fixture("mock-ttft-800.json");

    let path = history::append_history(&a, &result_path).unwrap();
    history::append_history(&b, &result_path).unwrap();

    assert_eq!(path, dir.path().join("nightly/clawperf_history.jsonl"));
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    let entries: Vec<HistoryEntry> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(entries[0].config.mock.as_ref().unwrap().ttft_ms, 500.0);
    assert_eq!(entries[1].config.mock.as_ref().unwrap().ttft_ms, 800.0);
    assert_eq!(entries[1].users.len(), 4);
    assert_eq!(
        entries[1].summary.ttft.unwrap().p50,
        b.summary.ttft.unwrap().p50
    );
    // Each line stays compact: no turns, snapshots or timeline.
    let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert!(line.get("timeline").is_none());
    assert!(line["users"][0].get("turns").is_none());
}

#[test]
fn cli_parses_the_benchmark_without_subcommand() {
    let invocation =
        Invocation::try_parse_from(["clawperf", "--endpoint", "mock", "--model", "m", "--quiet"])
            .unwrap();
    let Invocation::Bench(cli) = invocation else {
        panic!("expected a benchmark run, got {invocation:?}");
    };
    assert_eq!(cli.bench.endpoint, "mock");
    assert!(cli.bench.quiet);
}

#[test]
fn cli_still_requires_endpoint_and_model() {
    let err = Invocation::try_parse_from(["clawperf", "--model", "m"]).unwrap_err();
    assert!(err.to_string().contains("--endpoint"), "{err}");
}

#[test]
fn cli_parses_report_and_compare() {
    let report = Invocation::try_parse_from(["clawperf", "report", "run.json"]).unwrap();
    let Invocation::Command(Command::Report(args)) = report else {
        panic!("expected report, got {report:?}");
    };
    assert_eq!(args.result, PathBuf::from("run.json"));
    assert_eq!(args.output_dir, None);

    let compare = Invocation::try_parse_from([
        "clawperf",
        "compare",
        "a.json",
        "b.json",
        "--label-a",
        "before",
        "--label-b",
        "after",
    ])
    .unwrap();
    let Invocation::Command(Command::Compare(args)) = compare else {
        panic!("expected compare, got {compare:?}");
    };
    assert_eq!(args.a, PathBuf::from("a.json"));
    assert_eq!(args.b, PathBuf::from("b.json"));
    assert_eq!(args.label_a.as_deref(), Some("before"));
    assert_eq!(args.label_b.as_deref(), Some("after"));
}

#[test]
fn cli_rejects_benchmark_options_on_subcommands() {
    let err = Invocation::try_parse_from(["clawperf", "--endpoint", "mock", "report", "run.json"])
        .unwrap_err();
    assert_eq!(
        err.kind(),
        clap::error::ErrorKind::ArgumentConflict,
        "{err}"
    );
}
