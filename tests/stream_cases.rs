//! The stream-case table: SSE byte streams as real servers send them, each with the TTFT, ITL
//! count, output tokens and outcome the client must measure. Every case is its own test
//! (run one with `cargo test --test stream_cases -- 'case name'`).
//!
//! Each case is served over HTTP by a scripted server on 127.0.0.1 port 0, with the scripted
//! pauses between reads, and measured by the real `ChatClient`. The lower bound of a TTFT range
//! is the scripted pause before the first text-bearing event, which is a hard minimum. The
//! upper bound adds a generous allowance for a loaded machine. Output tokens are counted as the runner counts
//! them: `usage.completion_tokens` when the server sent usage, else the text re-encoded with the
//! built-in tokenizer (one token per UTF-8 byte), so a count equal to the number of events
//! would show up as wrong.

mod scripted;

use std::ops::Range;
use std::time::Duration;

use clawperf::client::{ChatClient, ErrorClass, StreamRecord, TlsOptions, build_http_client};
use clawperf::openai::{ChatCompletionRequest, ChatMessage, Role};
use clawperf::result::TokenCountSource;
use clawperf::tokenizer::Tokenizer;
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::json;

use scripted::{
    Script, Step, chunk, chunk_json, done, event, finish, reasoning, role, send, token, usage,
    usage_json, wait,
};

/// Allowance above a scripted pause before a TTFT check fails.
const SLACK_MS: u64 = 1000;

/// Upper bound on any single case.
const CASE_LIMIT: Duration = Duration::from_secs(20);

/// What a case must measure.
enum Expect {
    Success(Measured),
    Failure {
        class: ErrorClass,
        status: Option<u16>,
        /// Text the failure message must contain (the server's own message where it sent one).
        message: &'static str,
    },
}

struct Measured {
    /// Range of the TTFT in milliseconds, or `None` when the reply carries no generated text.
    ttft_ms: Option<Range<u64>>,
    /// Range of the time to the first visible content, when it differs from the TTFT.
    first_content_ms: Option<Range<u64>>,
    itl_count: usize,
    output_tokens: u64,
    source: TokenCountSource,
    content: &'static str,
    reasoning: &'static str,
}

struct Case {
    name: &'static str,
    script: Script,
    expect: Expect,
}

/// Returns the TTFT range of a first text-bearing event scripted `milliseconds` after the request.
fn after(milliseconds: u64) -> Option<Range<u64>> {
    Some(milliseconds..milliseconds + SLACK_MS)
}

fn success(
    ttft_ms: Option<Range<u64>>,
    itl_count: usize,
    output_tokens: u64,
    source: TokenCountSource,
    content: &'static str,
) -> Expect {
    Expect::Success(Measured {
        first_content_ms: ttft_ms.clone(),
        ttft_ms,
        itl_count,
        output_tokens,
        source,
        content,
        reasoning: "",
    })
}

fn failure(class: ErrorClass, status: Option<u16>, message: &'static str) -> Expect {
    Expect::Failure {
        class,
        status,
        message,
    }
}

/// Replaces every line ending in the `Send` steps with `ending`.
fn with_line_endings(steps: Vec<Step>, ending: &str) -> Vec<Step> {
    steps
        .into_iter()
        .map(|step| match step {
            Step::Send(bytes) => {
                let text = String::from_utf8(bytes).unwrap();
                Step::Send(text.replace('\n', ending).into_bytes())
            }
            other => other,
        })
        .collect()
}

/// Joins the `Send` bytes of `steps` into one step, so that they arrive in one read.
fn one_read(steps: Vec<Step>) -> Step {
    let mut joined = Vec::new();
    for step in steps {
        if let Step::Send(bytes) = step {
            joined.extend_from_slice(&bytes);
        }
    }
    Step::Send(joined)
}

fn cases() -> Vec<Case> {
    use TokenCountSource::{Tokenizer as Encoded, Usage as Reported};

    let tool_call = |delta: serde_json::Value| chunk(json!({ "tool_calls": [delta] }), None);
    let han = r#"data: {"choices":[{"delta":{"content":"世界"}}]}"#.as_bytes();
    // Cut after the first byte of the three-byte "世".
    let cut = han.iter().position(|&byte| byte >= 0x80).unwrap() + 1;
    let completion = |usage: Option<serde_json::Value>| {
        let mut reply = json!({
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "whole reply"}, "finish_reason": "length"}],
        });
        if let Some(usage) = usage {
            reply["usage"] = usage;
        }
        reply.to_string()
    };

    vec![
        Case {
            name: "role-only first chunk long before the first token",
            script: Script::stream(vec![
                role(),
                wait(300),
                token("ab"),
                token("c"),
                finish("length"),
                usage(5, 3),
                done(),
            ]),
            expect: success(after(300), 1, 3, Reported, "abc"),
        },
        Case {
            name: "usage-only chunk with empty choices before the first token",
            script: Script::stream(vec![
                usage(5, 0),
                wait(300),
                token("a"),
                finish("length"),
                usage(5, 1),
                done(),
            ]),
            expect: success(after(300), 0, 1, Reported, "a"),
        },
        Case {
            name: "usage on every chunk, the last one counts",
            script: Script::stream(vec![
                role(),
                event(
                    &json!({"choices": [{"delta": {"content": "a"}}], "usage": {"prompt_tokens": 5, "completion_tokens": 1}}),
                ),
                event(
                    &json!({"choices": [{"delta": {"content": "b"}}], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}),
                ),
                event(
                    &json!({"choices": [{"delta": {}, "finish_reason": "length"}], "usage": {"prompt_tokens": 5, "completion_tokens": 3}}),
                ),
                done(),
            ]),
            expect: success(after(0), 1, 3, Reported, "ab"),
        },
        Case {
            name: "reasoning_content before content",
            script: Script::stream(vec![
                role(),
                wait(200),
                reasoning("think"),
                wait(300),
                token("ok"),
                finish("stop"),
                done(),
            ]),
            expect: Expect::Success(Measured {
                ttft_ms: after(200),
                first_content_ms: after(500),
                itl_count: 1,
                output_tokens: 7,
                source: Encoded,
                content: "ok",
                reasoning: "think",
            }),
        },
        Case {
            name: "reasoning before content",
            script: Script::stream(vec![
                role(),
                wait(200),
                chunk(json!({"reasoning": "hm"}), None),
                wait(300),
                token("yes"),
                finish("stop"),
                usage(5, 2),
                done(),
            ]),
            expect: Expect::Success(Measured {
                ttft_ms: after(200),
                first_content_ms: after(500),
                itl_count: 1,
                output_tokens: 2,
                source: Reported,
                content: "yes",
                reasoning: "hm",
            }),
        },
        Case {
            name: "reasoning and content in one chunk",
            script: Script::stream(vec![
                role(),
                wait(200),
                chunk(json!({"reasoning_content": "r", "content": "c"}), None),
                finish("stop"),
                usage(5, 2),
                done(),
            ]),
            expect: Expect::Success(Measured {
                ttft_ms: after(200),
                first_content_ms: after(200),
                itl_count: 0,
                output_tokens: 2,
                source: Reported,
                content: "c",
                reasoning: "r",
            }),
        },
        Case {
            name: "tool-call deltas",
            script: Script::stream(vec![
                role(),
                wait(200),
                tool_call(
                    json!({"index": 0, "id": "call_1", "type": "function", "function": {"name": "ls", "arguments": ""}}),
                ),
                tool_call(json!({"index": 0, "function": {"arguments": "{\"path\":"}})),
                tool_call(json!({"index": 0, "function": {"arguments": "\".\"}"}})),
                finish("tool_calls"),
                usage(5, 6),
                done(),
            ]),
            expect: Expect::Success(Measured {
                ttft_ms: after(200),
                first_content_ms: None,
                itl_count: 2,
                output_tokens: 6,
                source: Reported,
                content: "",
                reasoning: "",
            }),
        },
        Case {
            name: "chunks carrying several tokens",
            script: Script::stream(vec![
                role(),
                wait(200),
                token("hello world"),
                wait(100),
                token(" again"),
                finish("length"),
                usage(5, 5),
                done(),
            ]),
            expect: success(after(200), 1, 5, Reported, "hello world again"),
        },
        Case {
            name: "chunks carrying several tokens without usage",
            script: Script::stream(vec![
                role(),
                wait(200),
                token("hello world"),
                token(" again"),
                finish("length"),
                done(),
            ]),
            expect: success(after(200), 1, 17, Encoded, "hello world again"),
        },
        Case {
            name: "empty-content chunks",
            script: Script::stream(vec![
                role(),
                wait(100),
                token(""),
                wait(200),
                token("a"),
                token(""),
                token("b"),
                chunk(json!({"content": null}), None),
                finish("length"),
                usage(5, 2),
                done(),
            ]),
            expect: success(after(300), 1, 2, Reported, "ab"),
        },
        Case {
            name: "data field without a space",
            script: Script::stream(vec![
                send(&format!(
                    "data:{}\n\n",
                    chunk_json(json!({"role": "assistant"}), None)
                )),
                wait(200),
                send(&format!(
                    "data:{}\n\n",
                    chunk_json(json!({"content": "a"}), None)
                )),
                send(&format!(
                    "data:{}\n\n",
                    chunk_json(json!({}), Some("length"))
                )),
                send(&format!("data:{}\n\n", usage_json(5, 1))),
                send("data:[DONE]\n\n"),
            ]),
            expect: success(after(200), 0, 1, Reported, "a"),
        },
        Case {
            name: "CRLF line endings",
            script: Script::stream(with_line_endings(
                vec![
                    role(),
                    wait(200),
                    token("a"),
                    token("b"),
                    finish("length"),
                    usage(5, 2),
                    done(),
                ],
                "\r\n",
            )),
            expect: success(after(200), 1, 2, Reported, "ab"),
        },
        Case {
            name: "lone CR line endings",
            script: Script::stream(with_line_endings(
                vec![
                    role(),
                    wait(200),
                    token("a"),
                    token("b"),
                    finish("length"),
                    done(),
                ],
                "\r",
            )),
            expect: success(after(200), 1, 2, Encoded, "ab"),
        },
        Case {
            name: "byte order mark before the first event",
            script: Script::stream(vec![
                send("\u{feff}"),
                role(),
                wait(200),
                token("a"),
                finish("length"),
                done(),
            ]),
            expect: success(after(200), 0, 1, Encoded, "a"),
        },
        Case {
            name: "comment and keep-alive lines",
            script: Script::stream(vec![
                send(": ping\n\n"),
                wait(100),
                send(":\n\n"),
                role(),
                wait(100),
                send(": keep-alive\n\n"),
                wait(100),
                token("a"),
                send(": ping\n\n"),
                token("b"),
                finish("length"),
                usage(5, 2),
                done(),
            ]),
            expect: success(after(300), 1, 2, Reported, "ab"),
        },
        Case {
            name: "event split inside a UTF-8 character",
            script: Script::stream(vec![
                role(),
                wait(200),
                Step::Send(han[..cut].to_vec()),
                // The event is stamped by its first byte, so the TTFT ends before this pause.
                wait(1500),
                Step::Send(han[cut..].to_vec()),
                send("\n\n"),
                finish("length"),
                done(),
            ]),
            expect: success(Some(200..1400), 0, 6, Encoded, "世界"),
        },
        Case {
            name: "several events in one read",
            script: Script::stream(vec![
                wait(200),
                one_read(vec![
                    role(),
                    token("a"),
                    token("b"),
                    token("c"),
                    finish("length"),
                    usage(5, 3),
                    done(),
                ]),
            ]),
            expect: success(after(200), 2, 3, Reported, "abc"),
        },
        Case {
            name: "stream ends after finish_reason without DONE",
            script: Script::stream(vec![
                role(),
                wait(100),
                token("a"),
                finish("stop"),
                usage(5, 1),
            ]),
            expect: success(after(100), 0, 1, Reported, "a"),
        },
        Case {
            name: "stream ends without DONE or finish_reason",
            script: Script::stream(vec![role(), token("a"), token("b")]),
            expect: failure(ErrorClass::Truncated, Some(200), "before [DONE]"),
        },
        Case {
            name: "stream ends inside an event",
            script: Script::stream(vec![
                role(),
                token("a"),
                send(r#"data: {"choices":[{"delta":{"content":"cu"#),
            ]),
            expect: failure(ErrorClass::Truncated, Some(200), "no closing blank line"),
        },
        Case {
            name: "connection broken mid-stream",
            script: Script::stream(vec![role(), token("a"), wait(50), Step::Disconnect]),
            expect: failure(ErrorClass::Truncated, Some(200), "before [DONE]"),
        },
        Case {
            name: "error object inside a 200 stream",
            script: Script::stream(vec![
                role(),
                token("a"),
                event(
                    &json!({"error": {"message": "engine died", "type": "InternalServerError", "code": 500}}),
                ),
                done(),
            ]),
            expect: failure(ErrorClass::StreamError, Some(200), "engine died"),
        },
        Case {
            name: "flat vLLM error object inside a 200 stream",
            script: Script::stream(vec![
                role(),
                event(
                    &json!({"object": "error", "message": "KV cache exhausted", "type": "BadRequestError", "code": 400}),
                ),
            ]),
            expect: failure(ErrorClass::StreamError, Some(200), "KV cache exhausted"),
        },
        Case {
            name: "error event type",
            script: Script::stream(vec![
                role(),
                send("event: error\ndata: {\"message\":\"overloaded\"}\n\n"),
            ]),
            expect: failure(ErrorClass::StreamError, Some(200), "overloaded"),
        },
        Case {
            name: "malformed JSON payload",
            script: Script::stream(vec![role(), send("data: {\"choices\": [\n\n"), done()]),
            expect: failure(ErrorClass::MalformedStream, Some(200), "not a JSON object"),
        },
        Case {
            name: "200 response with a JSON error body",
            script: Script::fixed(
                200,
                "application/json",
                r#"{"error":{"message":"model not loaded","type":"ServiceUnavailableError","code":503}}"#,
            ),
            expect: failure(ErrorClass::MalformedStream, Some(200), "model not loaded"),
        },
        Case {
            name: "200 response with an HTML body",
            script: Script::fixed(200, "text/html", "<html>bad gateway</html>"),
            expect: failure(ErrorClass::MalformedStream, Some(200), "text/html"),
        },
        Case {
            name: "non-streaming reply",
            script: Script {
                content_type: "application/json",
                ..Script::stream(vec![
                    wait(200),
                    send(&completion(Some(
                        json!({"prompt_tokens": 5, "completion_tokens": 2}),
                    ))),
                ])
            },
            expect: success(after(200), 0, 2, Reported, "whole reply"),
        },
        Case {
            name: "non-streaming reply without usage",
            script: Script {
                content_type: "application/json",
                ..Script::stream(vec![wait(200), send(&completion(None))])
            },
            expect: success(after(200), 0, 11, Encoded, "whole reply"),
        },
        Case {
            name: "429 with the server's message",
            script: Script::fixed(
                429,
                "application/json",
                r#"{"error":{"message":"too many requests in flight","type":"RateLimitError"}}"#,
            ),
            expect: failure(
                ErrorClass::RateLimited,
                Some(429),
                "too many requests in flight",
            ),
        },
        Case {
            name: "400 with vLLM's flat error body",
            script: Script::fixed(
                400,
                "application/json",
                r#"{"object":"error","message":"maximum context length is 2048 tokens","type":"BadRequestError","code":400}"#,
            ),
            expect: failure(
                ErrorClass::HttpStatus,
                Some(400),
                "maximum context length is 2048 tokens",
            ),
        },
    ]
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

fn run_case(case: Case) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let outcome = runtime.block_on(async {
        let server = case.script.serve().await;
        let http = build_http_client(&TlsOptions::default()).unwrap();
        let client =
            ChatClient::new(http, server.chat_url(), None, Duration::from_secs(10)).unwrap();
        tokio::time::timeout(CASE_LIMIT, client.stream_chat(&request()))
            .await
            .map_err(|_| Failed::from("the request outlived the case limit"))
    })?;

    match (case.expect, outcome) {
        (Expect::Success(expected), Ok(record)) => check_measured(&expected, &record),
        (Expect::Success(_), Err(failure)) => {
            Err(format!("expected success, got {failure}").into())
        }
        (Expect::Failure { class, .. }, Ok(record)) => {
            Err(format!("expected a {class} failure, got success: {record:?}").into())
        }
        (
            Expect::Failure {
                class,
                status,
                message,
            },
            Err(failure),
        ) => {
            check(failure.class == class, || {
                format!("class: expected {class}, got {failure}")
            })?;
            check(failure.status == status, || {
                format!("status: expected {status:?}, got {failure}")
            })?;
            check(failure.message.contains(message), || {
                format!("message {:?} lacks {message:?}", failure.message)
            })
        }
    }
}

fn check_measured(expected: &Measured, record: &StreamRecord) -> Result<(), Failed> {
    let ttft = record.ttft.map(|ttft| ttft.as_millis() as u64);
    check_range("ttft", &expected.ttft_ms, ttft)?;
    let first_content = record
        .time_to_first_content
        .map(|first| first.as_millis() as u64);
    check_range(
        "time to first content",
        &expected.first_content_ms,
        first_content,
    )?;
    check(record.itl.len() == expected.itl_count, || {
        format!(
            "itl count: expected {}, got {} ({:?})",
            expected.itl_count,
            record.itl.len(),
            record.itl
        )
    })?;

    let (tokens, source) = record
        .output_tokens(&Tokenizer::builtin())
        .map_err(|error| format!("failed to count output tokens: {error}"))?;
    check(tokens == expected.output_tokens, || {
        format!(
            "output tokens: expected {}, got {tokens}",
            expected.output_tokens
        )
    })?;
    check(source == expected.source, || {
        format!(
            "output token source: expected {:?}, got {source:?}",
            expected.source
        )
    })?;
    check(record.content == expected.content, || {
        format!(
            "content: expected {:?}, got {:?}",
            expected.content, record.content
        )
    })?;
    check(record.reasoning == expected.reasoning, || {
        format!(
            "reasoning: expected {:?}, got {:?}",
            expected.reasoning, record.reasoning
        )
    })
}

fn check_range(what: &str, expected: &Option<Range<u64>>, got: Option<u64>) -> Result<(), Failed> {
    match (expected, got) {
        (None, None) => Ok(()),
        (Some(range), Some(value)) if range.contains(&value) => Ok(()),
        _ => Err(format!("{what}: expected {expected:?} ms, got {got:?} ms").into()),
    }
}

fn check(condition: bool, message: impl FnOnce() -> String) -> Result<(), Failed> {
    if condition {
        Ok(())
    } else {
        Err(message().into())
    }
}

fn main() {
    let arguments = Arguments::from_args();
    let trials = cases()
        .into_iter()
        .map(|case| Trial::test(case.name, move || run_case(case)))
        .collect();
    libtest_mimic::run(&arguments, trials).exit();
}
