//! Whole runs against servers that misbehave on purpose, one per failure class: every failed
//! turn must carry the right class, status and server message, the counts must add up per user
//! and in the summary, and the run must finish. Also: a user goes on after a failed turn
//! without adding its input to the history, and `--max-consecutive-failures` stops it.
//!
//! Every server is started by its test on 127.0.0.1 port 0.

mod scripted;

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Parser;
use clawperf::cli::Cli;
use clawperf::result::RunResult;
use clawperf::runner;
use serde_json::json;
use tokio::net::TcpListener;

use scripted::{Script, TestServer, done, event, finish, role, send, token, usage, wait};

/// Upper bound on one whole run in these tests.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Runs 1 user for `turns` turns of tiny requests against `base_url` with extra options.
async fn run_against(base_url: &str, turns: usize, options: &[&str]) -> RunResult {
    let turns = turns.to_string();
    let mut argv = vec![
        "clawperf",
        "--endpoint",
        base_url,
        "--model",
        "test",
        "--seed",
        "7",
        "--system-prefix-tokens",
        "20",
        "--user-prefix-tokens",
        "10",
        "--input-tokens-per-turn",
        "10",
        "--output-tokens-per-turn",
        "4",
        "--max-turns",
        &turns,
    ];
    argv.extend_from_slice(options);
    let config = Cli::try_parse_from(argv)
        .expect("valid arguments")
        .bench
        .validate()
        .expect("valid config");
    tokio::time::timeout(RUN_LIMIT, runner::run(config, None))
        .await
        .expect("the run finishes within the test limit")
        .expect("the run starts")
}

fn ok_stream() -> Script {
    Script::stream(vec![
        role(),
        token("a"),
        token("b"),
        token("c"),
        token("d"),
        finish("length"),
        usage(40, 4),
        done(),
    ])
}

fn failing_500() -> Script {
    Script::fixed(
        500,
        "application/json",
        r#"{"error":{"message":"CUDA out of memory","type":"InternalServerError","code":500}}"#,
    )
}

/// Starts a listener that accepts connections and closes them before sending anything.
async fn closing_listener() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    (format!("http://{address}/v1"), task)
}

struct Fault {
    name: &'static str,
    script: Script,
    options: &'static [&'static str],
    class: &'static str,
    status: Option<u16>,
    message: &'static str,
}

fn scripted_faults() -> Vec<Fault> {
    vec![
        Fault {
            name: "response headers later than the request timeout",
            script: Script {
                header_delay: Duration::from_secs(10),
                ..ok_stream()
            },
            options: &["--request-timeout", "0.3"],
            class: "timeout",
            status: None,
            message: "request timeout",
        },
        Fault {
            name: "stream stalls past the idle timeout",
            script: Script::stream(vec![role(), token("a"), wait(10_000), done()]),
            options: &["--idle-timeout", "0.3"],
            class: "idle_timeout",
            status: Some(200),
            message: "idle timeout",
        },
        Fault {
            name: "no response headers within the idle timeout",
            script: Script {
                header_delay: Duration::from_secs(10),
                ..ok_stream()
            },
            options: &["--idle-timeout", "0.3"],
            class: "idle_timeout",
            status: None,
            message: "idle timeout",
        },
        Fault {
            name: "HTTP 500 with an error body",
            script: failing_500(),
            options: &[],
            class: "http_status",
            status: Some(500),
            message: "CUDA out of memory",
        },
        Fault {
            name: "HTTP 429",
            script: Script::fixed(
                429,
                "application/json",
                r#"{"error":{"message":"rate limit exceeded","type":"RateLimitError"}}"#,
            ),
            options: &[],
            class: "rate_limited",
            status: Some(429),
            message: "rate limit exceeded",
        },
        Fault {
            name: "error object in a 200 stream",
            script: Script::stream(vec![
                role(),
                token("a"),
                event(&json!({"error": {"message": "engine died", "code": 500}})),
            ]),
            options: &[],
            class: "stream_error",
            status: Some(200),
            message: "engine died",
        },
        Fault {
            name: "garbage in a 200 stream",
            script: Script::stream(vec![role(), send("data: <html>oops</html>\n\n"), done()]),
            options: &[],
            class: "malformed_stream",
            status: Some(200),
            message: "<html>oops</html>",
        },
        Fault {
            name: "stream cut before DONE",
            script: Script::stream(vec![
                role(),
                token("a"),
                wait(50),
                scripted::Step::Disconnect,
            ]),
            options: &[],
            class: "truncated",
            status: Some(200),
            message: "before [DONE]",
        },
    ]
}

fn assert_every_turn_failed_with(result: &RunResult, name: &str, fault: &Fault, turns: u64) {
    let expected = BTreeMap::from([(fault.class.to_owned(), turns)]);
    assert_eq!(result.summary.errors_by_class, expected, "{name}: summary");
    assert_eq!(result.summary.failed_turns, turns, "{name}: failed turns");
    assert_eq!(result.summary.successful_turns, 0, "{name}: successes");
    assert_eq!(
        result.summary.ttft, None,
        "{name}: failed turns give no TTFT"
    );

    let user = &result.users[0];
    assert_eq!(user.aggregate.errors_by_class, expected, "{name}: per user");
    assert_eq!(user.aggregate.error_count, turns, "{name}: per user count");
    assert_eq!(
        user.aggregate.stop_reason, "max_turns",
        "{name}: stop reason"
    );
    for turn in &user.turns {
        let error = turn.error.as_ref().expect("a failed turn has an error");
        assert_eq!(error.class, fault.class, "{name}: turn {}", turn.turn_id);
        assert_eq!(error.status, fault.status, "{name}: turn {}", turn.turn_id);
        assert!(
            error.message.contains(fault.message),
            "{name}: message {:?} lacks {:?}",
            error.message,
            fault.message
        );
        assert_eq!(turn.ttft_ms, None, "{name}: turn {}", turn.turn_id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_is_classified() {
    for fault in scripted_faults() {
        let server = fault.script.clone().serve().await;
        let result = run_against(&server.base_url(), 2, fault.options).await;

        assert_every_turn_failed_with(&result, fault.name, &fault, 2);
        serde_json::to_string(&result).expect("the result serializes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_closed_is_connect_failure() {
    let (base_url, listener) = closing_listener().await;
    let fault = Fault {
        name: "connection closed before the response",
        script: ok_stream(),
        options: &[],
        class: "connect",
        status: None,
        message: "",
    };

    let result = run_against(&base_url, 2, &["--no-preflight"]).await;

    assert_every_turn_failed_with(&result, fault.name, &fault, 2);
    listener.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_preflight_leaves_no_journal() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    let directory = tempfile::tempdir().unwrap();
    let journal = directory.path().join("run.turns.jsonl");
    let argv = [
        "clawperf",
        "--endpoint",
        &base_url,
        "--model",
        "test",
        "--journal",
        journal.to_str().unwrap(),
    ];
    let config = Cli::try_parse_from(argv)
        .expect("valid arguments")
        .bench
        .validate()
        .expect("valid config");

    let outcome = tokio::time::timeout(RUN_LIMIT, runner::run(config, None))
        .await
        .expect("the pre-flight check gives up within the test limit");

    let error = outcome.expect_err("nothing listens, so the pre-flight check fails");
    assert!(error.to_string().contains("pre-flight"), "{error}");
    assert!(
        !journal.exists(),
        "a run that never started created its journal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_connect_failure() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    let fault = Fault {
        name: "connection refused",
        script: ok_stream(),
        options: &[],
        class: "connect",
        status: None,
        message: "",
    };

    let result = run_against(&base_url, 2, &["--no-preflight"]).await;

    assert_every_turn_failed_with(&result, fault.name, &fault, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_goes_on_after_a_failed_turn() {
    let server: TestServer = Script::serve_sequence(vec![failing_500(), ok_stream()]).await;

    let result = run_against(&server.base_url(), 4, &[]).await;

    let turns = &result.users[0].turns;
    let outcomes: Vec<bool> = turns.iter().map(|turn| turn.success).collect();
    assert_eq!(outcomes, vec![false, true, false, true]);
    // Turn 2 resends turn 1's context with a new input of the same size, so a failed turn's
    // input never reached the history.
    assert_eq!(turns[1].input_tokens, turns[0].input_tokens);
    assert!(
        turns[2].input_tokens > turns[1].input_tokens,
        "turn 3 carries turn 2's input and reply"
    );
    assert_eq!(turns[3].input_tokens, turns[2].input_tokens);
    assert_eq!(
        result.summary.errors_by_class,
        BTreeMap::from([("http_status".to_owned(), 2)])
    );
    assert_eq!(result.summary.successful_turns, 2);
    assert_eq!(result.users[0].aggregate.stop_reason, "max_turns");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_failures_stop_the_user() {
    let server = failing_500().serve().await;

    let result = run_against(&server.base_url(), 10, &["--max-consecutive-failures", "3"]).await;

    let user = &result.users[0];
    assert_eq!(user.turns.len(), 3);
    assert_eq!(user.aggregate.stop_reason, "consecutive_failures");
    assert_eq!(result.config.max_consecutive_failures, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn successes_reset_the_failure_count() {
    let server = Script::serve_sequence(vec![failing_500(), failing_500(), ok_stream()]).await;

    let result = run_against(&server.base_url(), 6, &["--max-consecutive-failures", "3"]).await;

    let user = &result.users[0];
    assert_eq!(user.turns.len(), 6);
    assert_eq!(user.aggregate.stop_reason, "max_turns");
    assert_eq!(result.summary.successful_turns, 2);
}
