//! The mock serving engine over HTTP: wire format, timing, prefix caching, metrics and the
//! `clawperf-mock-server` binary. Every server is started by the test on 127.0.0.1, port 0.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clawperf::mock::{MockConfig, MockServer, TPOT_HEADER, TTFT_HEADER};
use clawperf::openai::{ChatCompletion, ChatCompletionChunk, ChatMessage, Role, Usage};
use clawperf::tokenizer::Tokenizer;
use futures_util::StreamExt;
use serde_json::{Value, json};

const BLOCK_SIZE: usize = 16;

/// Returns a config with no latency, so tests that do not measure timing finish at once.
fn instant_config() -> MockConfig {
    MockConfig {
        ttft: Duration::ZERO,
        tpot: Duration::ZERO,
        ..MockConfig::default()
    }
}

async fn start(config: MockConfig) -> MockServer {
    MockServer::start(config)
        .await
        .expect("start the mock server")
}

fn messages(user: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage::new(Role::System, "You are a coding agent."),
        ChatMessage::new(Role::User, user),
    ]
}

fn request_body(messages: &[ChatMessage], max_tokens: u32, stream: bool) -> Value {
    json!({
        "model": "mock",
        "messages": messages,
        "max_tokens": max_tokens,
        "stream": stream,
        "stream_options": {"include_usage": true},
    })
}

async fn post(server: &MockServer, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/chat/completions", server.base_url()))
        .json(body)
        .send()
        .await
        .expect("send the request")
}

/// One server-sent event: its `data:` payload and when its last byte arrived.
#[derive(Debug)]
struct Event {
    data: String,
    arrived: Instant,
}

/// Reads a whole event stream, stamping each event with the arrival of the bytes completing it.
async fn read_events(response: reqwest::Response) -> Vec<Event> {
    let mut events = Vec::new();
    let mut buffer = String::new();
    let mut body = response.bytes_stream();
    while let Some(bytes) = body.next().await {
        let arrived = Instant::now();
        buffer.push_str(std::str::from_utf8(&bytes.expect("read the stream")).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let data = event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("event without `data: `: {event:?}"))
                .trim_end_matches('\n')
                .to_owned();
            events.push(Event { data, arrived });
        }
    }
    assert!(
        buffer.is_empty(),
        "stream ended inside an event: {buffer:?}"
    );
    events
}

fn chunks(events: &[Event]) -> Vec<ChatCompletionChunk> {
    events
        .iter()
        .filter(|event| event.data != "[DONE]")
        .map(|event| serde_json::from_str(&event.data).expect("chunk JSON"))
        .collect()
}

/// Streams one request and returns its chunks' concatenated content and its usage.
async fn stream_reply(
    server: &MockServer,
    messages: &[ChatMessage],
    max_tokens: u32,
) -> (String, Usage) {
    let events = read_events(post(server, &request_body(messages, max_tokens, true)).await).await;
    let chunks = chunks(&events);
    let text = chunks
        .iter()
        .flat_map(|chunk| &chunk.choices)
        .filter_map(|choice| choice.delta.content.as_deref())
        .collect();
    let usage = chunks
        .last()
        .and_then(|chunk| chunk.usage)
        .expect("a usage chunk");
    (text, usage)
}

fn content(chunk: &ChatCompletionChunk) -> Option<&str> {
    chunk.choices.first()?.delta.content.as_deref()
}

#[tokio::test]
async fn stream_starts_with_role_chunk() {
    let server = start(instant_config()).await;
    let events = read_events(post(&server, &request_body(&messages("hi"), 5, true)).await).await;
    let first: Value = serde_json::from_str(&events[0].data).unwrap();

    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(first["choices"][0]["delta"]["content"], "");
    assert_eq!(first["choices"][0]["finish_reason"], Value::Null);
}

#[tokio::test]
async fn stream_sends_one_chunk_per_token() {
    let server = start(instant_config()).await;
    let events = read_events(post(&server, &request_body(&messages("hi"), 5, true)).await).await;
    let chunks = chunks(&events);
    let token_chunks = &chunks[1..chunks.len() - 1];

    assert_eq!(events.len(), 8, "role, 5 tokens, usage, [DONE]");
    assert_eq!(token_chunks.len(), 5);
    for chunk in token_chunks {
        let text = content(chunk).expect("a token chunk carries content");
        assert_eq!(Tokenizer::builtin().count(text).unwrap(), 1, "{text:?}");
    }
}

#[tokio::test]
async fn stream_finishes_on_last_token() {
    let server = start(instant_config()).await;
    let events = read_events(post(&server, &request_body(&messages("hi"), 5, true)).await).await;
    let chunks = chunks(&events);
    let finish_reasons: Vec<Option<&str>> = chunks[1..6]
        .iter()
        .map(|chunk| chunk.choices[0].finish_reason.as_deref())
        .collect();

    assert_eq!(finish_reasons, [None, None, None, None, Some("length")]);
}

#[tokio::test]
async fn stream_ends_with_usage_and_done() {
    let server = start(instant_config()).await;
    let messages = messages("hi");
    let events = read_events(post(&server, &request_body(&messages, 5, true)).await).await;
    let usage_chunk: Value = serde_json::from_str(&events[events.len() - 2].data).unwrap();
    let prompt_tokens = Tokenizer::builtin().encode_chat(&messages).unwrap().len();

    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], prompt_tokens);
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 5);
    assert_eq!(usage_chunk["usage"]["total_tokens"], prompt_tokens + 5);
    assert_eq!(
        usage_chunk["usage"]["prompt_tokens_details"]["cached_tokens"],
        0
    );
    assert_eq!(events.last().unwrap().data, "[DONE]");
}

#[tokio::test]
async fn stream_omits_usage_unless_requested() {
    let server = start(instant_config()).await;
    let mut body = request_body(&messages("hi"), 3, true);
    body.as_object_mut().unwrap().remove("stream_options");
    let events = read_events(post(&server, &body).await).await;

    assert_eq!(events.len(), 5, "role, 3 tokens, [DONE]");
    assert!(chunks(&events).iter().all(|chunk| chunk.usage.is_none()));
}

#[tokio::test]
async fn stream_has_event_stream_content_type() {
    let server = start(instant_config()).await;
    let response = post(&server, &request_body(&messages("hi"), 1, true)).await;
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    read_events(response).await;
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
}

#[tokio::test]
async fn non_streaming_returns_completion() {
    let server = start(instant_config()).await;
    let messages = messages("hi");
    let response = post(&server, &request_body(&messages, 7, false)).await;
    assert_eq!(response.status(), 200);
    let completion: ChatCompletion = response.json().await.unwrap();
    let choice = &completion.choices[0];
    let text = choice.message.content.as_deref().unwrap();
    let usage = completion.usage.unwrap();

    assert_eq!(completion.object, "chat.completion");
    assert_eq!(choice.message.role, Some(Role::Assistant));
    assert_eq!(choice.finish_reason.as_deref(), Some("length"));
    assert_eq!(Tokenizer::builtin().count(text).unwrap(), 7, "{text:?}");
    assert_eq!(
        usage.prompt_tokens as usize,
        Tokenizer::builtin().encode_chat(&messages).unwrap().len()
    );
    assert_eq!(usage.completion_tokens, 7);
    assert_eq!(usage.total_tokens, Some(usage.prompt_tokens + 7));
}

#[tokio::test]
async fn missing_max_tokens_generates_default() {
    let server = start(instant_config()).await;
    let mut body = request_body(&messages("hi"), 1, false);
    body.as_object_mut().unwrap().remove("max_tokens");
    let completion: ChatCompletion = post(&server, &body).await.json().await.unwrap();
    assert_eq!(
        completion.usage.unwrap().completion_tokens,
        u64::from(clawperf::mock::DEFAULT_MAX_TOKENS)
    );
}

#[tokio::test]
async fn same_seed_generates_same_text() {
    let first = start(instant_config()).await;
    let second = start(instant_config()).await;
    let (first_text, _) = stream_reply(&first, &messages("hi"), 20).await;
    let (second_text, _) = stream_reply(&second, &messages("hi"), 20).await;
    assert_eq!(first_text, second_text);
}

#[tokio::test]
async fn other_seed_generates_other_text() {
    let first = start(instant_config()).await;
    let second = start(MockConfig {
        seed: 1,
        ..instant_config()
    })
    .await;
    let (first_text, _) = stream_reply(&first, &messages("hi"), 20).await;
    let (second_text, _) = stream_reply(&second, &messages("hi"), 20).await;
    assert_ne!(first_text, second_text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_token_waits_for_ttft() {
    let server = start(MockConfig {
        ttft: Duration::from_millis(200),
        tpot: Duration::from_millis(20),
        ..MockConfig::default()
    })
    .await;
    let sent = Instant::now();
    let events = read_events(post(&server, &request_body(&messages("hi"), 5, true)).await).await;
    let first_token = events[1].arrived - sent;
    let last_token = events[5].arrived - sent;

    assert!(
        first_token >= Duration::from_millis(200),
        "TTFT {first_token:?}"
    );
    assert!(
        first_token < Duration::from_millis(350),
        "TTFT {first_token:?}"
    );
    // Token 4 is due at 200 + 4 × 20 ms.
    assert!(
        last_token >= Duration::from_millis(280),
        "last token {last_token:?}"
    );
    assert!(
        last_token < Duration::from_millis(430),
        "last token {last_token:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_chunk_precedes_ttft() {
    let server = start(MockConfig {
        ttft: Duration::from_millis(300),
        ..MockConfig::default()
    })
    .await;
    let sent = Instant::now();
    let events = read_events(post(&server, &request_body(&messages("hi"), 1, true)).await).await;
    let role_chunk = events[0].arrived - sent;
    assert!(
        role_chunk < Duration::from_millis(200),
        "role chunk after {role_chunk:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_override_timing() {
    let server = start(MockConfig {
        ttft: Duration::from_secs(5),
        tpot: Duration::from_secs(5),
        ..MockConfig::default()
    })
    .await;
    let sent = Instant::now();
    let response = reqwest::Client::new()
        .post(format!("{}/chat/completions", server.base_url()))
        .header(TTFT_HEADER, "100")
        .header(TPOT_HEADER, "12.5")
        .json(&request_body(&messages("hi"), 5, true))
        .send()
        .await
        .unwrap();
    let events = read_events(response).await;
    let first_token = events[1].arrived - sent;
    let last_token = events[5].arrived - sent;

    assert!(
        first_token >= Duration::from_millis(100),
        "TTFT {first_token:?}"
    );
    assert!(
        first_token < Duration::from_millis(250),
        "TTFT {first_token:?}"
    );
    // Token 4 is due at 100 + 4 × 12.5 ms.
    assert!(
        last_token >= Duration::from_millis(150),
        "last token {last_token:?}"
    );
    assert!(
        last_token < Duration::from_millis(300),
        "last token {last_token:?}"
    );
}

#[tokio::test]
async fn invalid_timing_header_is_rejected() {
    let server = start(instant_config()).await;
    let response = reqwest::Client::new()
        .post(format!("{}/chat/completions", server.base_url()))
        .header(TPOT_HEADER, "fast")
        .json(&request_body(&messages("hi"), 1, true))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();

    assert_eq!(status, 400);
    assert!(message.contains(TPOT_HEADER), "{message}");
    assert!(message.contains("fast"), "{message}");
}

#[tokio::test]
async fn conversation_reuses_prompt_and_reply() {
    let tokenizer = support::qwen3_tokenizer();
    let server = start(MockConfig {
        tokenizer: tokenizer.clone(),
        ..instant_config()
    })
    .await;
    let max_tokens = 40;
    let first_messages = vec![
        ChatMessage::new(Role::System, "You are a coding agent. ".repeat(20)),
        ChatMessage::new(Role::User, "Read src/main.rs and explain what it does."),
    ];
    let (reply, first_usage) = stream_reply(&server, &first_messages, max_tokens).await;
    let mut second_messages = first_messages.clone();
    second_messages.push(ChatMessage::new(Role::Assistant, reply.as_str()));
    second_messages.push(ChatMessage::new(Role::User, "Now add a test for it."));
    let (_, second_usage) = stream_reply(&server, &second_messages, max_tokens).await;

    // The engine cached prompt 1 plus every output token but the last, in full blocks.
    let first_prompt = tokenizer.encode_chat(&first_messages).unwrap();
    let output = tokenizer.encode(&reply).unwrap();
    let mut cached = first_prompt.clone();
    cached.extend_from_slice(&output[..output.len() - 1]);
    let second_prompt = tokenizer.encode_chat(&second_messages).unwrap();
    let common = cached
        .iter()
        .zip(&second_prompt)
        .take_while(|(cached, prompt)| cached == prompt)
        .count();
    let expected_blocks = (common / BLOCK_SIZE).min((second_prompt.len() - 1) / BLOCK_SIZE);
    let expected = (expected_blocks * BLOCK_SIZE) as u64;

    assert_eq!(
        output.len(),
        max_tokens as usize,
        "reply re-encodes to its tokens"
    );
    assert_eq!(first_usage.prompt_tokens as usize, first_prompt.len());
    assert_eq!(first_usage.cached_tokens(), Some(0));
    assert_eq!(second_usage.prompt_tokens as usize, second_prompt.len());
    assert_eq!(second_usage.cached_tokens(), Some(expected));
    assert!(
        expected > (first_prompt.len() / BLOCK_SIZE * BLOCK_SIZE) as u64,
        "blocks completed by the reply are hits: {expected} cached of a {}-token first prompt",
        first_prompt.len()
    );
    assert_eq!(server.stats().prefix_cache_hits, expected);
}

#[tokio::test]
async fn disabled_prefix_caching_never_hits() {
    let server = start(MockConfig {
        prefix_caching: false,
        ..instant_config()
    })
    .await;
    let messages = messages(&"long prompt ".repeat(10));
    stream_reply(&server, &messages, 4).await;
    let (_, usage) = stream_reply(&server, &messages, 4).await;
    let stats = server.stats();
    let prompt_tokens = Tokenizer::builtin().encode_chat(&messages).unwrap().len() as u64;

    assert_eq!(usage.cached_tokens(), Some(0));
    assert_eq!(stats.prefix_cache_hits, 0);
    assert_eq!(stats.prefix_cache_queries, 2 * prompt_tokens);
    assert_eq!(stats.hbm_cached_blocks, 0);
}

#[tokio::test]
async fn external_tier_serves_evicted_prefix() {
    let server = start(MockConfig {
        hbm_blocks: 8,
        external_blocks: 1024,
        ..instant_config()
    })
    .await;
    // Each prompt is about 20 blocks, so the second evicts the first from the HBM tier. They
    // differ from their first block on, so no block of the first stays in HBM.
    let first = [ChatMessage::new(Role::User, "a".repeat(300))];
    let second = [ChatMessage::new(Role::User, "b".repeat(300))];
    stream_reply(&server, &first, 1).await;
    stream_reply(&server, &second, 1).await;
    let before = server.stats();
    let (_, usage) = stream_reply(&server, &first, 1).await;
    let after = server.stats();
    let prompt_tokens = Tokenizer::builtin().encode_chat(&first).unwrap().len() as u64;
    let all_blocks = (prompt_tokens - 1) / BLOCK_SIZE as u64 * BLOCK_SIZE as u64;

    assert_eq!(usage.cached_tokens(), Some(all_blocks));
    assert_eq!(after.prefix_cache_hits - before.prefix_cache_hits, 0);
    assert_eq!(
        after.external_prefix_cache_queries - before.external_prefix_cache_queries,
        prompt_tokens
    );
    assert_eq!(
        after.external_prefix_cache_hits - before.external_prefix_cache_hits,
        all_blocks
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauges_follow_request_phases() {
    let server = start(MockConfig {
        ttft: Duration::from_millis(300),
        tpot: Duration::from_millis(300),
        ..MockConfig::default()
    })
    .await;
    let response = post(&server, &request_body(&messages("hi"), 2, true)).await;
    let reading = tokio::spawn(read_events(response));
    let waiting = server.stats();
    tokio::time::sleep(Duration::from_millis(450)).await;
    let running = server.stats();
    reading.await.unwrap();
    let finished = server.stats();

    assert_eq!((waiting.waiting, waiting.running), (1, 0), "before TTFT");
    assert_eq!((running.waiting, running.running), (0, 1), "between tokens");
    assert_eq!(
        (finished.waiting, finished.running),
        (0, 0),
        "after the last token"
    );
    assert_eq!(finished.kv_blocks_in_use, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_ends_running_request() {
    let server = start(MockConfig {
        ttft: Duration::ZERO,
        tpot: Duration::from_millis(50),
        ..MockConfig::default()
    })
    .await;
    let response = post(&server, &request_body(&messages("hi"), 100, true)).await;
    let mut body = response.bytes_stream();
    body.next().await.unwrap().unwrap();
    drop(body);

    let deadline = Instant::now() + Duration::from_secs(3);
    while server.stats().running > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = server.stats();
    assert_eq!(stats.running, 0);
    assert!(stats.generation_tokens_total < 100, "{stats:?}");
}

#[tokio::test]
async fn metrics_report_counters() {
    let server = start(MockConfig {
        served_model_name: Some("qwen-test".to_owned()),
        external_blocks: 64,
        ..instant_config()
    })
    .await;
    let mut body = request_body(&messages(&"repeat me ".repeat(8)), 3, true);
    body["model"] = json!("qwen-test");
    for _ in 0..3 {
        read_events(post(&server, &body).await).await;
    }
    let response = reqwest::get(server.metrics_url()).await.unwrap();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = response.text().await.unwrap();
    let stats = server.stats();
    let sample = |name: &str| -> f64 {
        let prefix = format!("{name}{{engine=\"0\",model_name=\"qwen-test\"}} ");
        let line = text
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no sample {name} in\n{text}"));
        line.parse().unwrap()
    };

    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert!(stats.prefix_cache_hits > 0, "{stats:?}");
    assert_eq!(
        sample("vllm:prefix_cache_queries_total"),
        stats.prefix_cache_queries as f64
    );
    assert_eq!(
        sample("vllm:prefix_cache_hits_total"),
        stats.prefix_cache_hits as f64
    );
    assert_eq!(
        sample("vllm:external_prefix_cache_queries_total"),
        stats.external_prefix_cache_queries as f64
    );
    assert_eq!(
        sample("vllm:external_prefix_cache_hits_total"),
        stats.external_prefix_cache_hits as f64
    );
    assert_eq!(
        sample("vllm:prompt_tokens_total"),
        stats.prompt_tokens_total as f64
    );
    assert_eq!(sample("vllm:generation_tokens_total"), 9.0);
    assert_eq!(sample("vllm:num_requests_running"), 0.0);
    assert_eq!(sample("vllm:num_requests_waiting"), 0.0);
    assert_eq!(sample("vllm:kv_cache_usage_perc"), 0.0);
    assert!(sample("vllm:prefix_cache_queries_created") > 1.0e9);
    assert!(
        text.contains("# TYPE vllm:prefix_cache_hits_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE vllm:prefix_cache_hits_created gauge\n"),
        "{text}"
    );
    assert!(text.contains("vllm:prompt_tokens_total{engine=\"0\",model_name=\"qwen-test\"} "));
}

#[tokio::test]
async fn metrics_print_floats_like_vllm() {
    let server = start(instant_config()).await;
    let text = reqwest::get(server.metrics_url())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("vllm:prefix_cache_queries_total{engine=\"0\",model_name=\"mock\"} 0.0\n"),
        "{text}"
    );
}

#[tokio::test]
async fn models_lists_served_name() {
    let server = start(MockConfig {
        served_model_name: Some("qwen-test".to_owned()),
        ..instant_config()
    })
    .await;
    let models: Value = reqwest::get(format!("{}/models", server.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "qwen-test");
    assert_eq!(models["data"][0]["object"], "model");
}

#[tokio::test]
async fn models_default_to_mock() {
    let server = start(instant_config()).await;
    let models: Value = reqwest::get(format!("{}/models", server.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "mock");
}

#[tokio::test]
async fn health_returns_ok() {
    let server = start(instant_config()).await;
    let addr = server.addr();
    let response = reqwest::get(format!("http://{addr}/health")).await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn unknown_model_gets_not_found() {
    let server = start(MockConfig {
        served_model_name: Some("qwen-test".to_owned()),
        ..instant_config()
    })
    .await;
    let mut body = request_body(&messages("hi"), 1, true);
    body["model"] = json!("other-model");
    let response = post(&server, &body).await;
    let status = response.status();
    let error: Value = response.json().await.unwrap();

    assert_eq!(status, 404);
    assert_eq!(error["error"]["type"], "NotFoundError");
    assert_eq!(error["error"]["code"], 404);
    assert_eq!(
        error["error"]["message"],
        "The model `other-model` does not exist."
    );
    assert_eq!(
        server.stats().requests,
        0,
        "a rejected request is not admitted"
    );
}

#[tokio::test]
async fn invalid_json_gets_bad_request() {
    let server = start(instant_config()).await;
    let response = reqwest::Client::new()
        .post(format!("{}/chat/completions", server.base_url()))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let status = response.status();
    let error: Value = response.json().await.unwrap();

    assert_eq!(status, 400);
    assert_eq!(error["error"]["type"], "BadRequestError");
    assert_eq!(error["error"]["code"], 400);
    assert!(error["error"]["message"].is_string());
}

#[tokio::test]
async fn missing_messages_gets_bad_request() {
    let server = start(instant_config()).await;
    let response = post(&server, &json!({"model": "mock", "max_tokens": 1})).await;
    let status = response.status();
    let error: Value = response.json().await.unwrap();
    let message = error["error"]["message"].as_str().unwrap();

    assert_eq!(status, 400);
    assert!(message.contains("messages"), "{message}");
}

#[tokio::test]
async fn zero_max_tokens_gets_bad_request() {
    let server = start(instant_config()).await;
    let response = post(&server, &request_body(&messages("hi"), 0, true)).await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn body_over_two_megabytes_is_accepted() {
    let server = start(instant_config()).await;
    let prompt = "word ".repeat(600_000);
    let messages = messages(&prompt);
    let response = post(&server, &request_body(&messages, 1, false)).await;
    assert_eq!(response.status(), 200);
    let completion: ChatCompletion = response.json().await.unwrap();
    assert_eq!(
        completion.usage.unwrap().prompt_tokens as usize,
        Tokenizer::builtin().encode_chat(&messages).unwrap().len()
    );
}

#[tokio::test]
async fn router_serves_on_own_listener() {
    let state = Arc::new(clawperf::mock::MockState::new(instant_config()).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, clawperf::mock::router(state))
            .await
            .unwrap();
    });
    let response = reqwest::get(format!("http://{addr}/health")).await.unwrap();
    server.abort();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let server = start(instant_config()).await;
    let addr = server.addr();
    server.shutdown().await;
    let result = reqwest::get(format!("http://{addr}/health")).await;
    assert!(result.is_err(), "{result:?}");
}

#[test]
fn binary_help_describes_options() {
    let output = Command::new(env!("CARGO_BIN_EXE_clawperf-mock-server"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();

    assert!(output.status.success());
    for option in [
        "--port",
        "--ttft",
        "--tpot",
        "--tokenizer",
        "--num-gpu-blocks",
        "--no-prefix-caching",
    ] {
        assert!(help.contains(option), "{option} missing from\n{help}");
    }
}

/// Kills the child process on drop, so a failed test leaves no server running.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_serves_until_sigterm() {
    let mut child = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_clawperf-mock-server"))
            .args(["--port", "0", "--ttft", "0"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The server logs its address as `addr=127.0.0.1:PORT` (no colours: stdout is a pipe).
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| {
            let rest = line.split_once("addr=")?.1;
            Some(rest.split_whitespace().next()?.to_owned())
        })
        .expect("the server logs its address");

    let health = reqwest::get(format!("http://{addr}/health")).await.unwrap();
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let status = child.0.wait().unwrap();

    assert_eq!(health.status(), 200);
    assert!(status.success(), "{status:?}");
}
