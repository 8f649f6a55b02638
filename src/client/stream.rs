//! Sending one streamed chat-completions request and turning the response into a
//! [`StreamRecord`] or a classified [`TurnFailure`].
//!
//! A 200 reply is read by its content type: `text/event-stream` (or no content type) is parsed
//! as a stream, `application/json` as a non-streaming `chat.completion` reply from a server that
//! ignored `stream: true`. A body with any other content type is parsed as a stream when its
//! first bytes are an SSE field or comment, and is a malformed stream otherwise.
//!
//! A stream is complete when it sends `[DONE]` or when a chunk has carried a `finish_reason`,
//! because a server that closes the connection after the last token's `finish_reason` has
//! delivered the whole reply (maybe without the usage chunk). A stream that ends, by EOF or a
//! broken connection, before either is `Truncated` whatever it carried before. Events after
//! `[DONE]` are ignored.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION};
use reqwest::{Client, Response};
use tokio::time::{Instant, Sleep, timeout_at};
use url::Url;

use super::chunk::{
    JsonReply, Payload, error_message_from_body, parse_json_reply, parse_payload, quote,
};
use super::error::{ErrorClass, TurnFailure};
use super::http::ClientError;
use super::measure::{Recorder, StreamRecord};
use super::sse::{SseEvent, SseParser};
use crate::openai::{ChatCompletionRequest, StreamOptions};

/// Max time to wait for the end of the body after `[DONE]`. Reading the body to its end returns
/// the connection to the pool, so the next turn does not pay for a new connection inside its
/// TTFT. Past this wait the connection is closed instead, which changes no measured value.
const DRAIN_AFTER_DONE: Duration = Duration::from_secs(1);

/// How much of an error or unexpected body is read for the failure message.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// A request timeout so long that `t0 + timeout` would overflow is treated as this one.
const EFFECTIVELY_NO_TIMEOUT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Sends streamed chat-completions requests to one endpoint and measures them.
///
/// Cloning is cheap and clones share the connection pool of the `reqwest::Client`.
#[derive(Debug, Clone)]
pub struct ChatClient {
    http: Client,
    chat_url: Url,
    /// `Bearer <key>`, marked sensitive so that it never appears in debug output.
    authorization: Option<HeaderValue>,
    request_timeout: Duration,
    idle_timeout: Option<Duration>,
}

impl ChatClient {
    /// Creates a client for `chat_url` (see [`super::chat_completions_url`]). `request_timeout`
    /// bounds a whole request, from connecting to the end of the stream. The API key, when
    /// given, is sent as `Authorization: Bearer <key>`.
    pub fn new(
        http: Client,
        chat_url: Url,
        api_key: Option<String>,
        request_timeout: Duration,
    ) -> Result<Self, ClientError> {
        let authorization = match api_key {
            Some(key) => {
                let mut value = HeaderValue::try_from(format!("Bearer {key}"))
                    .map_err(|_| ClientError::InvalidApiKey)?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok(Self {
            http,
            chat_url,
            authorization,
            request_timeout,
            idle_timeout: None,
        })
    }

    /// Fails a turn with `IdleTimeout` when nothing arrives for `idle_timeout`: no response
    /// headers after the request was sent, or no body bytes after the previous ones. The first
    /// wait includes the server's prefill on engines that send nothing before the first token
    /// (vLLM sends its role chunk together with it), so keep it above the slowest expected TTFT.
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = Some(idle_timeout);
        self
    }

    pub fn chat_url(&self) -> &Url {
        &self.chat_url
    }

    /// Sends `request` as a streamed request and measures the reply.
    ///
    /// `stream` and `stream_options.include_usage` are sent as `true` whatever their values in
    /// `request`, because the measurement needs the stream and the final usage chunk.
    pub async fn stream_chat(
        &self,
        request: &ChatCompletionRequest,
    ) -> Result<StreamRecord, TurnFailure> {
        let mut builder = self
            .http
            .post(self.chat_url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(encode_request(request));
        if let Some(authorization) = &self.authorization {
            builder = builder.header(AUTHORIZATION, authorization.clone());
        }
        let http_request = builder.build().map_err(|error| TurnFailure {
            class: ErrorClass::Connect,
            message: format!("failed to build the request: {}", describe_error(error)),
            status: None,
            elapsed: Duration::ZERO,
        })?;

        let t0 = Instant::now();
        let deadline = t0
            .checked_add(self.request_timeout)
            .unwrap_or_else(|| t0 + EFFECTIVELY_NO_TIMEOUT);
        let headers_deadline = self
            .idle_timeout
            .and_then(|idle| t0.checked_add(idle))
            .filter(|idle_deadline| *idle_deadline < deadline);
        let response = match timeout_at(
            headers_deadline.unwrap_or(deadline),
            self.http.execute(http_request),
        )
        .await
        {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                return Err(TurnFailure {
                    class: ErrorClass::Connect,
                    message: describe_error(error),
                    status: None,
                    elapsed: t0.elapsed(),
                });
            }
            Err(_) if headers_deadline.is_some() => {
                return Err(TurnFailure {
                    class: ErrorClass::IdleTimeout,
                    message: format!(
                        "timed out after {:?} (the idle timeout) waiting for the response \
                         headers",
                        self.idle_timeout.unwrap_or_default()
                    ),
                    status: None,
                    elapsed: t0.elapsed(),
                });
            }
            Err(_) => {
                return Err(TurnFailure {
                    class: ErrorClass::Timeout,
                    message: format!(
                        "timed out after {:?} (the request timeout) waiting for the response \
                         headers",
                        self.request_timeout
                    ),
                    status: None,
                    elapsed: t0.elapsed(),
                });
            }
        };

        let status = response.status();
        let body_kind = BodyKind::of(response.headers());
        let reader = BodyReader {
            response,
            status: status.as_u16(),
            t0,
            deadline,
            request_timeout: self.request_timeout,
            idle_timeout: self.idle_timeout,
            timer: Box::pin(tokio::time::sleep_until(deadline)),
            timer_deadline: deadline,
        };
        if !status.is_success() {
            return Err(reader.status_failure().await);
        }
        match body_kind {
            BodyKind::EventStream => reader.read_event_stream(None, request.max_tokens).await,
            BodyKind::Json => reader.read_json_reply(request.max_tokens).await,
            BodyKind::Other(content_type) => {
                reader
                    .read_unlabelled(&content_type, request.max_tokens)
                    .await
            }
        }
    }
}

/// Bytes reserved for the JSON around the message texts when sizing a request body.
const REQUEST_FRAMING_BYTES: usize = 512;
/// Bytes reserved per message for its role and JSON punctuation.
const MESSAGE_FRAMING_BYTES: usize = 64;

/// Serializes the request with `stream` and `stream_options.include_usage` forced on.
///
/// The body is the one copy of the context that a request in flight holds, so its buffer is
/// sized up front instead of doubling as it grows, which would leave up to half of it unused.
fn encode_request(request: &ChatCompletionRequest) -> Vec<u8> {
    let include_usage = request
        .stream_options
        .is_some_and(|options| options.include_usage);
    let text_bytes: usize = request
        .messages
        .iter()
        .map(|message| message.content.len() + MESSAGE_FRAMING_BYTES)
        .sum();
    let mut body = Vec::with_capacity(text_bytes + REQUEST_FRAMING_BYTES);
    let encoded = if request.stream && include_usage {
        serde_json::to_writer(&mut body, request)
    } else {
        let mut streamed = request.clone();
        streamed.stream = true;
        streamed.stream_options = Some(StreamOptions {
            include_usage: true,
        });
        serde_json::to_writer(&mut body, &streamed)
    };
    // serde_json fails only on non-string map keys or a failing custom `Serialize`, and the
    // request type has neither.
    encoded.expect("a ChatCompletionRequest always serializes to JSON");
    body
}

/// The way the body of a 200 reply is read, chosen by its `Content-Type`.
#[derive(Debug, PartialEq, Eq)]
enum BodyKind {
    EventStream,
    Json,
    Other(String),
}

impl BodyKind {
    fn of(headers: &HeaderMap) -> Self {
        let Some(value) = headers.get(CONTENT_TYPE) else {
            return BodyKind::EventStream;
        };
        let text = String::from_utf8_lossy(value.as_bytes());
        let essence = text
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "text/event-stream" | "" => BodyKind::EventStream,
            "application/json" => BodyKind::Json,
            _ if essence.ends_with("+json") => BodyKind::Json,
            _ => BodyKind::Other(text.into_owned()),
        }
    }
}

/// The reason a body read produced no bytes.
enum ReadFailure {
    Timeout,
    IdleTimeout,
    Connection(reqwest::Error),
}

/// The reason event handling stopped before the end of the body.
enum Stop {
    Done {
        at: Instant,
    },
    Failed {
        class: ErrorClass,
        message: String,
        at: Instant,
    },
}

/// A response whose headers have arrived, with the deadlines of its request.
struct BodyReader {
    response: Response,
    status: u16,
    t0: Instant,
    deadline: Instant,
    request_timeout: Duration,
    idle_timeout: Option<Duration>,
    /// The timer of the current read, set to `timer_deadline`.
    timer: Pin<Box<Sleep>>,
    timer_deadline: Instant,
}

impl BodyReader {
    /// Reads the next piece of the body within the request deadline and the idle timeout.
    async fn read(&mut self) -> Result<Option<Bytes>, ReadFailure> {
        let idle_deadline = self
            .idle_timeout
            .and_then(|idle| Instant::now().checked_add(idle));
        let (read_deadline, idle_is_sooner) = match idle_deadline {
            Some(idle_deadline) if idle_deadline < self.deadline => (idle_deadline, true),
            _ => (self.deadline, false),
        };
        // One timer serves every read of the body: moving it only when the deadline changes
        // keeps a stream of thousands of chunks from registering a timer per chunk.
        if self.timer_deadline != read_deadline {
            self.timer.as_mut().reset(read_deadline);
            self.timer_deadline = read_deadline;
        }
        tokio::select! {
            biased;
            read = self.response.chunk() => read.map_err(ReadFailure::Connection),
            () = &mut self.timer => Err(if idle_is_sooner {
                ReadFailure::IdleTimeout
            } else {
                ReadFailure::Timeout
            }),
        }
    }

    /// Reads the body as an event stream. `first_read` is a read that was already taken, with
    /// its arrival instant.
    async fn read_event_stream(
        mut self,
        first_read: Option<(Bytes, Instant)>,
        max_tokens: Option<u32>,
    ) -> Result<StreamRecord, TurnFailure> {
        let mut parser = SseParser::new();
        let mut recorder = Recorder::new(self.t0, max_tokens);
        let mut pending_read = first_read;
        loop {
            let (bytes, arrived) = match pending_read.take() {
                Some(read) => read,
                None => {
                    let read = self.read().await;
                    let arrived = Instant::now();
                    match read {
                        Ok(Some(bytes)) => (bytes, arrived),
                        Ok(None) => return self.end_of_stream(parser, recorder, arrived, None),
                        Err(ReadFailure::Connection(error)) => {
                            return self.end_of_stream(parser, recorder, arrived, Some(error));
                        }
                        Err(timeout) => return Err(self.timeout_failure(&timeout)),
                    }
                }
            };

            match parser.feed(&bytes, arrived, |event| handle_event(&mut recorder, event)) {
                Ok(()) => {}
                Err(Stop::Done { at }) => {
                    self.drain().await;
                    return Ok(recorder.finish(at));
                }
                Err(Stop::Failed { class, message, at }) => {
                    return Err(self.failure(class, message, at));
                }
            }
        }
    }

    /// Finishes a stream whose body ended without `[DONE]`, normally or by a connection error.
    fn end_of_stream(
        &self,
        parser: SseParser<Instant>,
        recorder: Recorder,
        at: Instant,
        error: Option<reqwest::Error>,
    ) -> Result<StreamRecord, TurnFailure> {
        let tail = parser.finish();
        if recorder.is_complete() {
            return Ok(recorder.finish(at));
        }

        let mut message = String::from("stream ended before [DONE] and before any finish_reason");
        match error {
            Some(error) => {
                message.push_str(": ");
                message.push_str(&describe_error(error));
            }
            None => message.push_str(": the response body ended"),
        }
        if let Some(tail) = tail {
            let cut_text = if tail.partial_line.is_empty() {
                tail.data
            } else {
                tail.partial_line
            };
            message.push_str(&format!(
                "; the last event had no closing blank line: {}",
                quote(&cut_text)
            ));
        }
        Err(self.failure(ErrorClass::Truncated, message, at))
    }

    /// Reads the rest of the body after `[DONE]` so that the connection can be reused.
    async fn drain(&mut self) {
        let limit = Instant::now()
            .checked_add(DRAIN_AFTER_DONE)
            .map_or(self.deadline, |limit| limit.min(self.deadline));
        while let Ok(Ok(Some(_))) = timeout_at(limit, self.response.chunk()).await {}
    }

    async fn read_json_reply(
        mut self,
        max_tokens: Option<u32>,
    ) -> Result<StreamRecord, TurnFailure> {
        let mut body = Vec::new();
        let mut first_byte_at = None;
        loop {
            match self.read().await {
                Ok(Some(bytes)) => {
                    first_byte_at.get_or_insert_with(Instant::now);
                    body.extend_from_slice(&bytes);
                }
                Ok(None) => break,
                Err(ReadFailure::Connection(error)) => {
                    let message = format!("JSON reply ended early: {}", describe_error(error));
                    return Err(self.failure(ErrorClass::Truncated, message, Instant::now()));
                }
                Err(timeout) => return Err(self.timeout_failure(&timeout)),
            }
        }
        let end = Instant::now();

        let text = String::from_utf8_lossy(&body);
        match parse_json_reply(&text) {
            Ok(JsonReply::Completion(completion)) => {
                let mut recorder = Recorder::new(self.t0, max_tokens);
                recorder.record_completion(&completion, first_byte_at.unwrap_or(end));
                Ok(recorder.finish(end))
            }
            Ok(JsonReply::Error(message)) => {
                Err(self.failure(ErrorClass::MalformedStream, message, end))
            }
            Err(description) => Err(self.failure(ErrorClass::MalformedStream, description, end)),
        }
    }

    /// Builds the failure for a non-success status, with the server's message when its body
    /// has one.
    async fn status_failure(mut self) -> TurnFailure {
        let class = if self.status == 429 {
            ErrorClass::RateLimited
        } else {
            ErrorClass::HttpStatus
        };
        let location = self
            .response
            .headers()
            .get(LOCATION)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        let body = self.read_prefix(MAX_ERROR_BODY_BYTES).await;

        let message = match (error_message_from_body(&body), location) {
            (Some(message), _) => message,
            (None, Some(location)) => {
                format!("redirected to {location}; give the final URL as the endpoint")
            }
            (None, None) if body.is_empty() => "empty response body".to_owned(),
            (None, None) => quote(&String::from_utf8_lossy(&body)),
        };
        self.failure(class, message, Instant::now())
    }

    /// Reads a 200 body whose content type is neither an event stream nor JSON: as an event
    /// stream when its first bytes are an SSE field or comment, else as a malformed reply.
    async fn read_unlabelled(
        mut self,
        content_type: &str,
        max_tokens: Option<u32>,
    ) -> Result<StreamRecord, TurnFailure> {
        let first = match self.read().await {
            Ok(Some(bytes)) => bytes,
            Ok(None) | Err(ReadFailure::Connection(_)) => Bytes::new(),
            Err(timeout) => return Err(self.timeout_failure(&timeout)),
        };
        let arrived = Instant::now();
        if looks_like_event_stream(&first) {
            return self
                .read_event_stream(Some((first, arrived)), max_tokens)
                .await;
        }

        let mut body = first.to_vec();
        let rest = self
            .read_prefix(MAX_ERROR_BODY_BYTES.saturating_sub(body.len()))
            .await;
        body.extend_from_slice(&rest);
        let message = format!(
            "expected a text/event-stream or application/json reply, got content type \
             {content_type:?}: {}",
            quote(&String::from_utf8_lossy(&body))
        );
        Err(self.failure(ErrorClass::MalformedStream, message, Instant::now()))
    }

    /// Reads up to `limit` bytes of the body, stopping quietly at any failure: the caller only
    /// needs the text for a message.
    async fn read_prefix(&mut self, limit: usize) -> Vec<u8> {
        let mut body = Vec::new();
        while body.len() < limit {
            match self.read().await {
                Ok(Some(bytes)) => body.extend_from_slice(&bytes),
                _ => break,
            }
        }
        body.truncate(limit);
        body
    }

    fn timeout_failure(&self, timeout: &ReadFailure) -> TurnFailure {
        let (class, message) = match (timeout, self.idle_timeout) {
            (ReadFailure::IdleTimeout, Some(idle)) => (
                ErrorClass::IdleTimeout,
                format!("timed out after {idle:?} without data (the idle timeout)"),
            ),
            _ => (
                ErrorClass::Timeout,
                format!(
                    "timed out after {:?} (the request timeout) while reading the response",
                    self.request_timeout
                ),
            ),
        };
        self.failure(class, message, Instant::now())
    }

    fn failure(&self, class: ErrorClass, message: String, at: Instant) -> TurnFailure {
        TurnFailure {
            class,
            message,
            status: Some(self.status),
            elapsed: at - self.t0,
        }
    }
}

/// Applies one event to the recorder, or returns the reason reading must stop.
fn handle_event(recorder: &mut Recorder, event: SseEvent<'_, Instant>) -> Result<(), Stop> {
    let at = event.stamp;
    match event.event_type {
        "message" => {}
        "error" => {
            let message = error_message_from_body(event.data.as_bytes())
                .unwrap_or_else(|| event.data.to_owned());
            return Err(Stop::Failed {
                class: ErrorClass::StreamError,
                message,
                at,
            });
        }
        // Named events other than `error` are not part of the chat-completions stream.
        _ => return Ok(()),
    }
    // An empty `data:` line carries nothing; some proxies send it as a keep-alive.
    if event.data.trim().is_empty() {
        return Ok(());
    }

    match parse_payload(event.data) {
        Ok(Payload::Chunk(chunk)) => {
            recorder.record_chunk(&chunk, at);
            Ok(())
        }
        Ok(Payload::Done) => {
            recorder.record_done();
            Err(Stop::Done { at })
        }
        Ok(Payload::Error(message)) => Err(Stop::Failed {
            class: ErrorClass::StreamError,
            message,
            at,
        }),
        Err(description) => Err(Stop::Failed {
            class: ErrorClass::MalformedStream,
            message: description,
            at,
        }),
    }
}

/// Returns whether `bytes`, the start of a body, begin with an SSE field or comment line.
fn looks_like_event_stream(bytes: &[u8]) -> bool {
    let bytes = bytes
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(bytes);
    let start = bytes
        .iter()
        .position(|byte| !byte.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let line = &bytes[start..];
    let prefixes: [&[u8]; 5] = [b"data:", b"event:", b"id:", b"retry:", b":"];
    prefixes.iter().any(|prefix| line.starts_with(prefix))
}

/// Returns the error and its sources as one line, without the URL that reqwest adds.
fn describe_error(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_kind_from_content_type() {
        let cases = [
            (
                "event stream",
                Some("text/event-stream"),
                BodyKind::EventStream,
            ),
            (
                "event stream with charset",
                Some("text/event-stream; charset=utf-8"),
                BodyKind::EventStream,
            ),
            (
                "upper case",
                Some("Text/Event-Stream"),
                BodyKind::EventStream,
            ),
            ("missing", None, BodyKind::EventStream),
            ("json", Some("application/json"), BodyKind::Json),
            (
                "problem json",
                Some("application/problem+json"),
                BodyKind::Json,
            ),
            (
                "html",
                Some("text/html; charset=utf-8"),
                BodyKind::Other("text/html; charset=utf-8".to_owned()),
            ),
        ];
        for (name, content_type, expected) in cases {
            let mut headers = HeaderMap::new();
            if let Some(content_type) = content_type {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            }
            assert_eq!(BodyKind::of(&headers), expected, "case {name}");
        }
    }

    #[test]
    fn event_stream_sniffing() {
        let cases: [(&str, &[u8], bool); 8] = [
            ("data field", b"data: {}\n\n", true),
            ("comment", b": ping\n\n", true),
            ("event field", b"event: message\n", true),
            ("leading blank lines", b"\r\n\ndata: x", true),
            ("bom", b"\xEF\xBB\xBFdata: x", true),
            ("html", b"<html><body>bad gateway</body></html>", false),
            ("json", b"{\"error\":\"x\"}", false),
            ("empty", b"", false),
        ];
        for (name, body, expected) in cases {
            assert_eq!(looks_like_event_stream(body), expected, "case {name}");
        }
    }

    #[test]
    fn request_forced_to_stream_with_usage() {
        let request = ChatCompletionRequest {
            model: "m".to_owned(),
            messages: Vec::new(),
            max_tokens: Some(4),
            stream: false,
            stream_options: None,
            ignore_eos: None,
            temperature: None,
        };
        let sent: serde_json::Value = serde_json::from_slice(&encode_request(&request)).unwrap();
        assert_eq!(sent["stream"], serde_json::Value::Bool(true));
        assert_eq!(
            sent["stream_options"]["include_usage"],
            serde_json::Value::Bool(true)
        );
    }

    #[test]
    fn api_key_hidden_from_debug() {
        let client = ChatClient::new(
            Client::new(),
            Url::parse("http://127.0.0.1:1/v1/chat/completions").unwrap(),
            Some("sk-secret-value".to_owned()),
            Duration::from_secs(1),
        )
        .unwrap();
        let debug = format!("{client:?}");
        assert!(!debug.contains("sk-secret-value"), "key leaked: {debug}");
    }

    #[test]
    fn api_key_with_newline_rejected() {
        let result = ChatClient::new(
            Client::new(),
            Url::parse("http://127.0.0.1:1/v1/chat/completions").unwrap(),
            Some("sk-abc\n".to_owned()),
            Duration::from_secs(1),
        );
        assert!(matches!(result, Err(ClientError::InvalidApiKey)));
    }
}
