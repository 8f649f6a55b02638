//! Decoding of `data:` payloads and JSON bodies into borrowed views for the measurement.
//!
//! The owned types in `crate::openai` allocate a `String` for every `id`, `model` and text field
//! of every chunk. On the hot path one chunk arrives per token, so these views borrow text from
//! the payload instead and skip fields the measurement does not use. Text that contains JSON
//! escapes cannot be borrowed and is the only thing that allocates.
//!
//! clawperf never sets `n`, so servers return one choice; only the first choice is read.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};

use crate::openai::Usage;

/// How many characters of an unparseable payload or body a failure message quotes.
const QUOTE_CHARS: usize = 200;

/// The content of one `data:` payload of a chat-completions stream.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "boxing the chunk would allocate once per token; the value lives for one event"
)]
pub(crate) enum Payload<'a> {
    /// The `[DONE]` sentinel.
    Done,
    Chunk(ChunkView<'a>),
    /// An error object; the string is the server's message.
    Error(String),
}

/// The parts of a `chat.completion.chunk` or `chat.completion` object that are measured.
#[derive(Debug, Default)]
pub(crate) struct ChunkView<'a> {
    pub choice: Option<ChoiceView<'a>>,
    pub usage: Option<Usage>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ChoiceView<'a> {
    /// The increment of a streamed chunk.
    #[serde(borrow, default)]
    pub delta: Option<MessageView<'a>>,
    /// The whole message of a non-streaming reply.
    #[serde(borrow, default)]
    pub message: Option<MessageView<'a>>,
    #[serde(borrow, default)]
    pub finish_reason: Option<Text<'a>>,
}

/// A `delta` or `message` object. `reasoning_content` is the vLLM/DeepSeek name for reasoning
/// text and `reasoning` the newer vLLM/OpenRouter one.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct MessageView<'a> {
    #[serde(borrow, default)]
    pub content: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub reasoning_content: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub reasoning: Option<Text<'a>>,
    #[serde(default)]
    pub tool_calls: Option<ArrayLength>,
}

impl MessageView<'_> {
    pub fn content(&self) -> &str {
        self.content.as_ref().map_or("", Text::as_str)
    }

    /// Returns the reasoning text. A server that fills both fields sends the same text twice,
    /// so only one is used: `reasoning_content` when it is non-empty, else `reasoning`.
    pub fn reasoning(&self) -> &str {
        let reasoning_content = self.reasoning_content.as_ref().map_or("", Text::as_str);
        if reasoning_content.is_empty() {
            self.reasoning.as_ref().map_or("", Text::as_str)
        } else {
            reasoning_content
        }
    }

    pub fn has_tool_calls(&self) -> bool {
        self.tool_calls.is_some_and(|calls| calls.0 > 0)
    }

    /// Returns whether this delta carries generated text: content, reasoning or a tool call.
    pub fn is_text_bearing(&self) -> bool {
        !self.content().is_empty() || !self.reasoning().is_empty() || self.has_tool_calls()
    }
}

/// A JSON string borrowed from the payload when it has no escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Text<'a>(pub Cow<'a, str>);

impl Text<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(value)))
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(value.to_owned())))
            }

            fn visit_string<E: de::Error>(self, value: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(value)))
            }
        }

        deserializer.deserialize_str(TextVisitor)
    }
}

/// The length of a JSON array whose elements are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ArrayLength(pub usize);

impl<'de> Deserialize<'de> for ArrayLength {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LengthVisitor;

        impl<'de> Visitor<'de> for LengthVisitor {
            type Value = ArrayLength;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("an array")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut length = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    length += 1;
                }
                Ok(ArrayLength(length))
            }
        }

        deserializer.deserialize_seq(LengthVisitor)
    }
}

/// The first element of the `choices` array; the others are skipped without allocating.
#[derive(Debug, Default)]
struct FirstChoice<'a>(Option<ChoiceView<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for FirstChoice<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FirstVisitor;

        impl<'de> Visitor<'de> for FirstVisitor {
            type Value = FirstChoice<'de>;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("an array of choices")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let first = seq.next_element::<ChoiceView<'de>>()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(FirstChoice(first))
            }
        }

        deserializer.deserialize_seq(FirstVisitor)
    }
}

/// The top-level fields that distinguish a chunk, a completion and an error object.
#[derive(Debug, Deserialize)]
struct RawObject<'a> {
    #[serde(borrow, default)]
    object: Option<Text<'a>>,
    #[serde(borrow, default)]
    choices: Option<FirstChoice<'a>>,
    #[serde(default)]
    usage: Option<Usage>,
    /// `{"error": {...}}`, the form of vLLM's in-stream errors, SGLang and OpenAI.
    #[serde(default)]
    error: Option<serde_json::Value>,
    /// The message of the flat `{"object": "error", "message": ...}` form of older vLLM.
    #[serde(borrow, default)]
    message: Option<Text<'a>>,
}

impl RawObject<'_> {
    /// Returns the server's message when this object is an error object.
    fn error_message(&self) -> Option<String> {
        if let Some(error) = &self.error {
            return Some(message_of_error_value(error));
        }
        let is_flat_error = self
            .object
            .as_ref()
            .is_some_and(|object| object.as_str() == "error");
        is_flat_error.then(|| self.message.as_ref().map_or("", Text::as_str).to_owned())
    }
}

/// Decodes one `data:` payload of a chat-completions stream.
///
/// A chunk is a JSON object with a `choices` array, a `usage` object (some servers omit
/// `choices` from the usage chunk) or `"object": "chat.completion.chunk"`. Anything else is
/// returned as an error describing the payload, which the caller reports as a malformed stream.
pub(crate) fn parse_payload(data: &str) -> Result<Payload<'_>, String> {
    if data.trim() == "[DONE]" {
        return Ok(Payload::Done);
    }
    let raw: RawObject<'_> = serde_json::from_str(data).map_err(|error| {
        format!(
            "data payload is not a JSON object ({error}): {}",
            quote(data)
        )
    })?;
    if let Some(message) = raw.error_message() {
        return Ok(Payload::Error(message));
    }

    let is_chunk = raw.choices.is_some()
        || raw.usage.is_some()
        || raw
            .object
            .as_ref()
            .is_some_and(|object| object.as_str() == "chat.completion.chunk");
    if !is_chunk {
        return Err(format!(
            "data payload is not a chat.completion.chunk: {}",
            quote(data)
        ));
    }
    Ok(Payload::Chunk(ChunkView {
        choice: raw.choices.and_then(|choices| choices.0),
        usage: raw.usage,
    }))
}

/// The content of the JSON body of a 200 reply.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "built once per reply and matched at once, so boxing would only add an allocation"
)]
pub(crate) enum JsonReply<'a> {
    Completion(ChunkView<'a>),
    Error(String),
}

/// Decodes the JSON body of a 200 reply to a streaming request, which a server sends when it
/// ignores `stream: true` or fails before starting the stream.
pub(crate) fn parse_json_reply(body: &str) -> Result<JsonReply<'_>, String> {
    let raw: RawObject<'_> = serde_json::from_str(body).map_err(|error| {
        format!(
            "response body is not a JSON object ({error}): {}",
            quote(body)
        )
    })?;
    if let Some(message) = raw.error_message() {
        return Ok(JsonReply::Error(message));
    }

    let has_message = raw.choices.as_ref().is_some_and(|choices| {
        choices
            .0
            .as_ref()
            .is_some_and(|choice| choice.message.is_some())
    });
    let is_completion = has_message
        || raw
            .object
            .as_ref()
            .is_some_and(|object| object.as_str() == "chat.completion");
    if !is_completion {
        return Err(format!(
            "response body is not a chat.completion object: {}",
            quote(body)
        ));
    }
    Ok(JsonReply::Completion(ChunkView {
        choice: raw.choices.and_then(|choices| choices.0),
        usage: raw.usage,
    }))
}

/// Returns the server's message from an HTTP error body: `error.message` (OpenAI, vLLM, SGLang),
/// a string `error`, a top-level `message` (older vLLM) or FastAPI's `detail`.
pub(crate) fn error_message_from_body(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    if let Some(error) = value.get("error") {
        return Some(message_of_error_value(error));
    }
    if let Some(message) = value.get("message").and_then(serde_json::Value::as_str) {
        return Some(message.to_owned());
    }
    match value.get("detail")? {
        serde_json::Value::String(detail) => Some(detail.clone()),
        detail => Some(detail.to_string()),
    }
}

fn message_of_error_value(error: &serde_json::Value) -> String {
    match error {
        serde_json::Value::String(message) => message.clone(),
        serde_json::Value::Object(fields) => match fields.get("message") {
            Some(serde_json::Value::String(message)) => message.clone(),
            _ => error.to_string(),
        },
        other => other.to_string(),
    }
}

/// Returns the start of `text` for a failure message, marked when it was shortened.
pub(crate) fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_CHARS) {
        Some((cut, _)) => format!("{:?}...", &text[..cut]),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_content_is_borrowed() {
        let data = r#"{"choices":[{"delta":{"content":"hi"}}]}"#;
        let Ok(Payload::Chunk(chunk)) = parse_payload(data) else {
            panic!("not a chunk")
        };
        let content = chunk.choice.unwrap().delta.unwrap().content.unwrap();
        assert!(
            matches!(content.0, Cow::Borrowed("hi")),
            "content was copied: {content:?}"
        );
    }

    #[test]
    fn escaped_content_is_decoded() {
        let data = r#"{"choices":[{"delta":{"content":"a\nb\u00e9"}}]}"#;
        let Ok(Payload::Chunk(chunk)) = parse_payload(data) else {
            panic!("not a chunk")
        };
        assert_eq!(chunk.choice.unwrap().delta.unwrap().content(), "a\nbé");
    }

    #[test]
    fn text_bearing_deltas() {
        let cases = [
            ("content", r#"{"content":"x"}"#, true),
            ("reasoning_content", r#"{"reasoning_content":"x"}"#, true),
            ("reasoning", r#"{"reasoning":"x"}"#, true),
            (
                "tool call",
                r#"{"tool_calls":[{"index":0,"function":{"arguments":"{"}}]}"#,
                true,
            ),
            ("role only", r#"{"role":"assistant"}"#, false),
            (
                "role and empty content",
                r#"{"role":"assistant","content":""}"#,
                false,
            ),
            ("null content", r#"{"content":null}"#, false),
            ("empty tool calls", r#"{"tool_calls":[]}"#, false),
            ("empty object", r#"{}"#, false),
        ];
        for (name, delta, expected) in cases {
            let view: MessageView<'_> = serde_json::from_str(delta).unwrap();
            assert_eq!(view.is_text_bearing(), expected, "case {name}");
        }
    }

    #[test]
    fn reasoning_is_not_doubled() {
        let view: MessageView<'_> =
            serde_json::from_str(r#"{"reasoning_content":"think","reasoning":"think"}"#).unwrap();
        assert_eq!(view.reasoning(), "think");
    }

    #[test]
    fn payload_kinds() {
        let cases = [
            ("done", "[DONE]", "done"),
            ("done with spaces", " [DONE] ", "done"),
            (
                "usage chunk",
                r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
                "chunk",
            ),
            (
                "usage without choices",
                r#"{"usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
                "chunk",
            ),
            (
                "object only",
                r#"{"object":"chat.completion.chunk"}"#,
                "chunk",
            ),
            (
                "nested error",
                r#"{"error":{"message":"boom","type":"InternalServerError","code":500}}"#,
                "error",
            ),
            ("string error", r#"{"error":"boom"}"#, "error"),
            (
                "flat vllm error",
                r#"{"object":"error","message":"boom","type":"BadRequestError","code":400}"#,
                "error",
            ),
            ("not json", "{\"choices\": [", "malformed"),
            ("plain text", "hello", "malformed"),
            ("json array", "[1,2]", "malformed"),
            ("unrelated object", r#"{"foo":1}"#, "malformed"),
            ("choices not array", r#"{"choices":{"a":1}}"#, "malformed"),
        ];
        for (name, data, expected) in cases {
            let kind = match parse_payload(data) {
                Ok(Payload::Done) => "done",
                Ok(Payload::Chunk(_)) => "chunk",
                Ok(Payload::Error(message)) => {
                    assert_eq!(message, "boom", "case {name}");
                    "error"
                }
                Err(_) => "malformed",
            };
            assert_eq!(kind, expected, "case {name}");
        }
    }

    #[test]
    fn only_first_choice_read() {
        let data = r#"{"choices":[{"delta":{"content":"a"}},{"delta":{"content":"b"}}]}"#;
        let Ok(Payload::Chunk(chunk)) = parse_payload(data) else {
            panic!("not a chunk")
        };
        assert_eq!(chunk.choice.unwrap().delta.unwrap().content(), "a");
    }

    #[test]
    fn http_error_messages() {
        let cases = [
            (
                "openai",
                r#"{"error":{"message":"bad model","type":"invalid_request_error"}}"#,
                Some("bad model"),
            ),
            (
                "flat vllm",
                r#"{"object":"error","message":"too long","type":"BadRequestError","code":400}"#,
                Some("too long"),
            ),
            (
                "fastapi detail",
                r#"{"detail":"Not Found"}"#,
                Some("Not Found"),
            ),
            (
                "fastapi list detail",
                r#"{"detail":[{"msg":"field required"}]}"#,
                Some(r#"[{"msg":"field required"}]"#),
            ),
            ("not json", "Internal Server Error", None),
            ("unknown json", r#"{"status":"bad"}"#, None),
        ];
        for (name, body, expected) in cases {
            assert_eq!(
                error_message_from_body(body.as_bytes()).as_deref(),
                expected,
                "case {name}"
            );
        }
    }

    #[test]
    fn json_reply_kinds() {
        let completion = r#"{"object":"chat.completion","choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
        let Ok(JsonReply::Completion(view)) = parse_json_reply(completion) else {
            panic!("not a completion")
        };
        assert_eq!(view.choice.unwrap().message.unwrap().content(), "hi");

        let error = r#"{"error":{"message":"boom"}}"#;
        assert!(
            matches!(parse_json_reply(error), Ok(JsonReply::Error(message)) if message == "boom")
        );

        let chunk = r#"{"object":"chat.completion.chunk","choices":[{"delta":{"content":"hi"}}]}"#;
        assert!(
            parse_json_reply(chunk).is_err(),
            "a lone chunk is not a completion"
        );
    }

    #[test]
    fn quote_shortens_long_text() {
        let long = "x".repeat(QUOTE_CHARS + 50);
        assert_eq!(quote(&long), format!("{:?}...", "x".repeat(QUOTE_CHARS)));
        assert_eq!(quote("short"), "\"short\"");
    }
}
