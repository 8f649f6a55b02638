//! Fault injection in the mock: each fault kind becomes the matching classified failure in
//! clawperf's results while the run carries on, and faults change at run time through the admin
//! endpoint and per request through a header. Every server is started by the test on
//! 127.0.0.1, port 0.

use std::time::Duration;

use clap::Parser;
use clawperf::cli::Cli;
use clawperf::client::{ChatClient, ErrorClass, TlsOptions, build_http_client};
use clawperf::mock::{FAULT_HEADER, FaultKind, FaultSettings, MockConfig, MockServer};
use clawperf::openai::{ChatCompletionRequest, ChatMessage, Role};
use clawperf::result::RunResult;
use clawperf::runner;
use serde_json::{Value, json};
use url::Url;

async fn start(faults: FaultSettings) -> MockServer {
    MockServer::start(MockConfig {
        ttft: Duration::from_millis(5),
        tpot: Duration::from_millis(1),
        faults,
        seed: 7,
        ..MockConfig::default()
    })
    .await
    .expect("start the mock server")
}

/// Runs 4 users for 3 turns each against `server`.
async fn run_against(server: &MockServer, extra: &[&str]) -> RunResult {
    let base_url = server.base_url();
    let mut argv = vec![
        "clawperf",
        "--endpoint",
        &base_url,
        "--model",
        "mock",
        "--seed",
        "42",
        "--num-users",
        "4",
        "--system-prefix-tokens",
        "200",
        "--user-prefix-tokens",
        "50",
        "--input-tokens-per-turn",
        "50",
        "--output-tokens-per-turn",
        "8",
        "--max-turns",
        "3",
    ];
    argv.extend_from_slice(extra);
    let config = Cli::try_parse_from(argv)
        .expect("valid arguments")
        .bench
        .validate()
        .expect("valid config");
    runner::run(config, None).await.expect("the run completes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_become_classified_failures() {
    let cases = [
        (FaultKind::RateLimited, "rate_limited"),
        (FaultKind::InternalError, "http_status"),
        (FaultKind::Unavailable, "http_status"),
        (FaultKind::StreamError, "stream_error"),
        (FaultKind::Disconnect, "truncated"),
        (FaultKind::MalformedChunk, "malformed_stream"),
        (FaultKind::Stall, "timeout"),
    ];
    for (kind, class) in cases {
        let server = start(FaultSettings {
            kind: Some(kind),
            rate: 0.5,
            stall_s: 3.0,
            ..FaultSettings::default()
        })
        .await;
        let result = run_against(&server, &["--request-timeout", "1"]).await;
        let injected = server.stats().faults_injected;
        server.shutdown().await;

        let turns: Vec<_> = result.users.iter().flat_map(|user| &user.turns).collect();
        assert_eq!(turns.len(), 12, "{kind}: every user runs all its turns");
        let failed: Vec<_> = turns.iter().filter(|turn| !turn.success).collect();
        assert!(!failed.is_empty(), "{kind}: no turn failed");
        assert!(failed.len() < turns.len(), "{kind}: every turn failed");
        assert_eq!(
            failed.len() as u64,
            injected,
            "{kind}: one failure per fault"
        );
        for turn in &failed {
            let error = turn.error.as_ref().expect("a failed turn has an error");
            assert_eq!(error.class, class, "{kind}: {}", error.message);
            assert_eq!(turn.ttft_ms, None, "{kind}: a failed turn has no latency");
        }
        assert_eq!(
            result.summary.errors_by_class.get(class).copied(),
            Some(failed.len() as u64),
            "{kind}"
        );
    }
}

fn request() -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: "mock".to_owned(),
        messages: vec![ChatMessage::new(Role::User, "hello")],
        max_tokens: Some(8),
        stream: true,
        stream_options: None,
        ignore_eos: Some(true),
        temperature: None,
    }
}

fn chat_client(server: &MockServer) -> ChatClient {
    let http = build_http_client(&TlsOptions::default()).unwrap();
    let url = Url::parse(&format!("{}/chat/completions", server.base_url())).unwrap();
    ChatClient::new(http, url, None, Duration::from_secs(10))
        .unwrap()
        .with_idle_timeout(Duration::from_millis(500))
}

async fn send_admin(request: reqwest::RequestBuilder) -> Value {
    let response = request.send().await.expect("send the admin request");
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.expect("a JSON body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_toggles_stall_at_run_time() {
    let server = start(FaultSettings::default()).await;
    let client = chat_client(&server);
    let faults_url = format!("http://{}/admin/faults", server.addr());
    let http = reqwest::Client::new();

    assert!(client.stream_chat(&request()).await.is_ok());

    let settings = send_admin(
        http.put(&faults_url)
            .json(&json!({"kind": "stall", "stall_s": 5})),
    )
    .await;
    assert_eq!(settings["kind"], "stall");
    assert_eq!(settings["rate"], 1.0);
    let failure = client.stream_chat(&request()).await.unwrap_err();
    assert_eq!(failure.class, ErrorClass::IdleTimeout, "{failure}");

    let settings = send_admin(http.delete(&faults_url)).await;
    assert_eq!(settings["kind"], Value::Null);
    assert!(client.stream_chat(&request()).await.is_ok());

    let state = send_admin(http.get(format!("http://{}/admin/state", server.addr()))).await;
    assert_eq!(state["counters"]["faults_injected"], 1);
    assert_eq!(state["latency_model"], "fixed");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_rejects_invalid_settings() {
    let server = start(FaultSettings::default()).await;
    let faults_url = format!("http://{}/admin/faults", server.addr());
    let http = reqwest::Client::new();
    for body in [
        json!({"kind": "explode"}),
        json!({"kind": "stall", "rate": 2.0}),
        json!({"kind": "stall", "stal_s": 1}),
    ] {
        let response = http.put(&faults_url).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_forces_and_suppresses_faults() {
    let server = start(FaultSettings {
        kind: Some(FaultKind::Unavailable),
        ..FaultSettings::default()
    })
    .await;
    let url = format!("{}/chat/completions", server.base_url());
    let http = reqwest::Client::new();
    let body = json!({
        "model": "mock",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 2,
    });

    let response = http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 503);

    let response = http
        .post(&url)
        .header(FAULT_HEADER, "none")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let response = http
        .post(&url)
        .header(FAULT_HEADER, "rate-limited")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");

    let response = http
        .post(&url)
        .header(FAULT_HEADER, "sometimes")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    server.shutdown().await;
}

/// Sends a chat completion that the `disconnect` fault breaks, and returns the body that
/// arrived and whether it broke.
async fn read_disconnected(server: &MockServer, stream: bool) -> (String, bool) {
    let url = format!("{}/chat/completions", server.base_url());
    let response = reqwest::Client::new()
        .post(&url)
        .header(FAULT_HEADER, "disconnect")
        .json(&json!({
            "model": "mock",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 4,
            "stream": stream,
        }))
        .send()
        .await
        .unwrap();
    read_until_cut(response).await
}

/// Reads a response body until it ends or breaks, and returns the bytes that arrived and
/// whether it broke.
async fn read_until_cut(mut response: reqwest::Response) -> (String, bool) {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) => body.extend_from_slice(&bytes),
            Ok(None) => return (String::from_utf8_lossy(&body).into_owned(), false),
            Err(_) => return (String::from_utf8_lossy(&body).into_owned(), true),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_cuts_after_the_first_token() {
    let server = start(FaultSettings::default()).await;
    for attempt in 0..20 {
        let (body, cut) = read_disconnected(&server, true).await;

        assert!(cut, "attempt {attempt}: the stream ended cleanly: {body}");
        let events: Vec<&str> = body
            .split("\n\n")
            .filter(|event| !event.is_empty())
            .collect();
        // The role chunk, then the first token's chunk, and nothing after it.
        assert_eq!(events.len(), 2, "attempt {attempt}: {body}");
        assert!(
            events[1].contains("\"content\":\""),
            "attempt {attempt}: {body}"
        );
        assert!(!body.contains("[DONE]"), "attempt {attempt}: {body}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_cuts_a_json_reply_in_half() {
    let server = start(FaultSettings::default()).await;
    for attempt in 0..20 {
        let (body, cut) = read_disconnected(&server, false).await;

        assert!(cut, "attempt {attempt}: the reply ended cleanly: {body}");
        assert!(
            body.starts_with('{'),
            "attempt {attempt}: no half body: {body:?}"
        );
    }
    server.shutdown().await;
}
