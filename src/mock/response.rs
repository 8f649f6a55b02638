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

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

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

/// Streams `generation` as server-sent events, each token when it is due.
pub(crate) fn stream(
    generation: Generation,
    header: ResponseHeader,
    include_usage: bool,
) -> Response {
    let events = EventStream {
        generation,
        header,
        include_usage,
        step: Step::Role,
    };
    let body = futures_util::stream::unfold(events, |mut events| async move {
        let event = events.next_event().await?;
        Some((Ok::<_, Infallible>(event), events))
    });
    ([(CONTENT_TYPE, EVENT_STREAM)], Body::from_stream(body)).into_response()
}

/// Waits for every token of `generation` and returns the whole reply.
pub(crate) async fn complete(mut generation: Generation, header: ResponseHeader) -> Response {
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
    Usage,
    Done,
    End,
}

struct EventStream {
    generation: Generation,
    header: ResponseHeader,
    include_usage: bool,
    step: Step,
}

impl EventStream {
    /// Returns the next event, waiting for its token to be due, or `None` after `[DONE]`.
    async fn next_event(&mut self) -> Option<Bytes> {
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
                if token.is_last {
                    self.step = if self.include_usage {
                        Step::Usage
                    } else {
                        Step::Done
                    };
                }
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
        }
    }
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
