//! Chat-completion responses in vLLM's wire format: the server-sent event stream and the
//! non-streaming `chat.completion` object.
//!
//! A stream is, as vLLM 0.32 sends it: a chunk with `delta: {"role": "assistant", "content":
//! ""}`, one chunk per generated token whose last one carries `finish_reason: "length"`, a
//! usage chunk with `choices: []` when `stream_options.include_usage` is set, and `data:
//! [DONE]`. Each event is one `data:` line followed by a blank line. Two differences from vLLM:
//! the role chunk goes out as soon as the prompt is tokenized, before the first token is due,
//! and usage always carries `prompt_tokens_details.cached_tokens`, which vLLM reports only with
//! `--enable-prompt-tokens-details`.

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Serialize;

use super::fault::{Fault, FaultKind};
use super::generation::Generation;
use crate::openai::{
    ChatCompletion, ChatCompletionChunk, ChunkChoice, CompletionChoice, CompletionMessage, Delta,
    Role,
};

/// The mock always generates exactly `max_tokens`, as vLLM does with `ignore_eos`.
const FINISH_REASON: &str = "length";
const EVENT_STREAM: &str = "text/event-stream; charset=utf-8";

/// Fields that every chunk of one response repeats.
#[derive(Debug, Clone)]
pub(crate) struct ResponseHeader {
    id: String,
    created: u64,
    model: String,
}

impl ResponseHeader {
    /// Creates the header for `generation`, echoing the request's `model` as vLLM does.
    pub(crate) fn new(generation: &Generation, model: String) -> Self {
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        Self {
            id: generation.id().to_owned(),
            created,
            model,
        }
    }

    fn chunk(&self, choices: Vec<ChunkChoice>) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".to_owned(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage: None,
        }
    }
}

/// Streams `generation` as server-sent events, each token when it is due. A stream `fault`
/// strikes right after the first token.
pub(crate) fn stream(
    generation: Generation,
    header: ResponseHeader,
    include_usage: bool,
    fault: Option<Fault>,
) -> Response {
    let events = EventStream {
        generation,
        header,
        include_usage,
        step: Step::Role,
        fault,
    };
    let body = futures_util::stream::unfold(events, |mut events| async move {
        let event = events.next_event().await?;
        Some((event, events))
    });
    ([(CONTENT_TYPE, EVENT_STREAM)], Body::from_stream(body)).into_response()
}

/// Waits for every token of `generation` and returns the whole reply. A stream `fault` applies
/// to the body: a stall delays it, a disconnect cuts it in half, a malformed chunk sends only
/// its first half, and a stream error replaces it with an error object.
pub(crate) async fn complete(
    generation: Generation,
    header: ResponseHeader,
    fault: Option<Fault>,
) -> Response {
    let completion = complete_body(generation, header).await;
    let Some(fault) = fault else {
        return completion;
    };
    match fault.kind {
        FaultKind::Stall => {
            tokio::time::sleep(fault.stall).await;
            completion
        }
        FaultKind::StreamError => Json(error_object()).into_response(),
        FaultKind::Disconnect | FaultKind::MalformedChunk => {
            let body = axum::body::to_bytes(completion.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            let half = body.slice(..body.len() / 2);
            let half = futures_util::stream::once(async { Ok::<_, io::Error>(half) });
            let body = if fault.kind == FaultKind::Disconnect {
                Body::from_stream(half.chain(futures_util::stream::once(disconnect())))
            } else {
                Body::from_stream(half)
            };
            ([(CONTENT_TYPE, "application/json")], body).into_response()
        }
        // HTTP faults are sent before the request reaches the engine.
        FaultKind::RateLimited | FaultKind::InternalError | FaultKind::Unavailable => completion,
    }
}

async fn complete_body(mut generation: Generation, header: ResponseHeader) -> Response {
    let mut content = String::new();
    while let Some(token) = generation.next_token().await {
        content.push_str(&token.text);
    }
    let completion = ChatCompletion {
        id: header.id,
        object: "chat.completion".to_owned(),
        created: header.created,
        model: header.model,
        choices: vec![CompletionChoice {
            index: 0,
            message: CompletionMessage {
                role: Some(Role::Assistant),
                content: Some(content),
                reasoning_content: None,
            },
            finish_reason: Some(FINISH_REASON.to_owned()),
        }],
        usage: Some(generation.usage()),
    };
    Json(completion).into_response()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Role,
    Tokens,
    /// A stream fault strikes, then the stream goes on at `resume` if it survives.
    Fault {
        resume: ResumeStep,
    },
    Usage,
    Done,
    End,
}

/// The step a stream resumes at after a stall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResumeStep {
    Tokens,
    Usage,
    Done,
}

struct EventStream {
    generation: Generation,
    header: ResponseHeader,
    include_usage: bool,
    step: Step,
    fault: Option<Fault>,
}

impl EventStream {
    /// Returns the next event, waiting for its token to be due, or `None` after `[DONE]`. An
    /// error ends the body without the chunked terminator, so the client sees a connection
    /// closed mid-stream.
    async fn next_event(&mut self) -> Option<Result<Bytes, io::Error>> {
        loop {
            if let Step::Fault { resume } = self.step {
                let fault = self.fault.take().expect("a fault step has a fault");
                match fault.kind {
                    FaultKind::Stall => {
                        tokio::time::sleep(fault.stall).await;
                        self.step = match resume {
                            ResumeStep::Tokens => Step::Tokens,
                            ResumeStep::Usage => Step::Usage,
                            ResumeStep::Done => Step::Done,
                        };
                        continue;
                    }
                    FaultKind::Disconnect => {
                        self.step = Step::End;
                        return Some(disconnect().await);
                    }
                    FaultKind::StreamError => {
                        self.step = Step::Done;
                        return Some(Ok(data_event(&error_object())));
                    }
                    FaultKind::MalformedChunk => {
                        self.step = Step::Done;
                        let chunk =
                            format!("data: {{\"id\": \"{}\", \"choices\": [\n\n", self.header.id);
                        return Some(Ok(Bytes::from(chunk)));
                    }
                    FaultKind::RateLimited | FaultKind::InternalError | FaultKind::Unavailable => {
                        self.step = Step::Tokens;
                        continue;
                    }
                }
            }
            return self.next_regular_event().await.map(Ok);
        }
    }

    async fn next_regular_event(&mut self) -> Option<Bytes> {
        match self.step {
            Step::Role => {
                self.step = Step::Tokens;
                let delta = Delta {
                    role: Some(Role::Assistant),
                    content: Some(String::new()),
                    ..Delta::default()
                };
                Some(data_event(&self.header.chunk(vec![choice(delta, None)])))
            }
            Step::Tokens => {
                let token = self.generation.next_token().await?;
                let finish_reason = token.is_last.then(|| FINISH_REASON.to_owned());
                let resume = match (token.is_last, self.include_usage) {
                    (false, _) => ResumeStep::Tokens,
                    (true, true) => ResumeStep::Usage,
                    (true, false) => ResumeStep::Done,
                };
                self.step = if self.fault.is_some() {
                    Step::Fault { resume }
                } else {
                    match resume {
                        ResumeStep::Tokens => Step::Tokens,
                        ResumeStep::Usage => Step::Usage,
                        ResumeStep::Done => Step::Done,
                    }
                };
                let delta = Delta {
                    content: Some(token.text),
                    ..Delta::default()
                };
                Some(data_event(
                    &self.header.chunk(vec![choice(delta, finish_reason)]),
                ))
            }
            Step::Usage => {
                self.step = Step::Done;
                let mut chunk = self.header.chunk(Vec::new());
                chunk.usage = Some(self.generation.usage());
                Some(data_event(&chunk))
            }
            Step::Done => {
                self.step = Step::End;
                Some(Bytes::from_static(b"data: [DONE]\n\n"))
            }
            Step::End => None,
            Step::Fault { .. } => unreachable!("next_event handles the fault step"),
        }
    }
}

/// Returns the in-stream error object of an injected stream error, in vLLM's format.
fn error_object() -> serde_json::Value {
    serde_json::json!({
        "error": {
            "message": "injected fault: the engine failed while generating",
            "type": "InternalServerError",
            "param": null,
            "code": 500,
        }
    })
}

/// Breaks the body, which makes hyper close the connection. Hyper writes out what it has
/// buffered when the body has no data ready, but it drops the connection on a body error
/// without writing. This therefore yields once first, so that the data sent just before the
/// fault (the first token, or half a JSON reply) reaches the client.
async fn disconnect() -> Result<Bytes, io::Error> {
    tokio::task::yield_now().await;
    Err(io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "injected fault: disconnect",
    ))
}

fn choice(delta: Delta, finish_reason: Option<String>) -> ChunkChoice {
    ChunkChoice {
        index: 0,
        delta,
        finish_reason,
    }
}

fn data_event(payload: &impl Serialize) -> Bytes {
    let json = serde_json::to_string(payload).expect("chunks serialize to JSON");
    Bytes::from(format!("data: {json}\n\n"))
}
