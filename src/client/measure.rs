//! The timing definitions of a streamed turn and the record they produce.
//!
//! All instants come from a monotonic clock. t0 is taken just before the request is sent. An
//! event is stamped with the arrival of the read that delivered its first byte (see
//! [`super::sse`]), so several events that arrive in one read share one stamp.
//!
//! A *text-bearing event* is a chunk whose first choice has non-empty `delta.content`,
//! `delta.reasoning_content` or `delta.reasoning`, or a non-empty `delta.tool_calls` array.
//! A role-only chunk, a chunk with empty content, a usage-only chunk (`choices: []`) and `[DONE]`
//! are not text-bearing: they never end TTFT and are never ITL points.
//!
//! - `ttft`: t0 to the first text-bearing event.
//! - `time_to_first_content`: t0 to the first event with non-empty `delta.content`; later than
//!   `ttft` when reasoning or a tool call came first.
//! - `itl`: the gaps between successive text-bearing events; the first event is not a gap, so
//!   there are `text_events - 1` values.
//! - `e2e`: t0 to the last text-bearing event.
//! - `stream_end`: t0 to the `[DONE]` event, or to end of input when there was none.
//!
//! The output token count is deliberately not derived here: one event may carry several tokens.
//! Callers take `usage.completion_tokens` or re-encode `content` and `reasoning`.

use std::time::Duration;

use tokio::time::Instant;

use super::chunk::{ChunkView, MessageView};
use crate::openai::Usage;
use crate::result::TokenCountSource;
use crate::tokenizer::{EncodeError, Tokenizer};

/// Largest number of inter-token gaps reserved up front from `max_tokens`, so that a huge
/// `max_tokens` does not reserve memory the reply will never use.
const MAX_RESERVED_GAPS: usize = 16 * 1024;

/// The measurement and text of one successful streamed turn.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRecord {
    /// Time to the first text-bearing event; `None` when the reply had no generated text.
    pub ttft: Option<Duration>,
    /// Time to the first event with non-empty `delta.content`.
    pub time_to_first_content: Option<Duration>,
    /// Gaps between successive text-bearing events.
    pub itl: Vec<Duration>,
    /// Time to the last text-bearing event.
    pub e2e: Option<Duration>,
    /// Time to `[DONE]`, or to end of input when the server sent no `[DONE]`.
    pub stream_end: Duration,
    /// The `delta.content` texts joined.
    pub content: String,
    /// The reasoning texts joined.
    pub reasoning: String,
    /// The last `usage` object the server sent, normally the one of the final usage chunk.
    pub usage: Option<Usage>,
    /// How many text-bearing events arrived. This is not a token count.
    pub text_events: u32,
    /// The last non-null `finish_reason` of the first choice.
    pub finish_reason: Option<String>,
    /// Whether the stream ended with `[DONE]`.
    pub saw_done: bool,
}

impl StreamRecord {
    /// Returns the output token count and its source: `usage.completion_tokens` when the
    /// server sent usage, else the reasoning and content texts re-encoded with `tokenizer`.
    /// Never the number of events, because one event may carry several tokens.
    ///
    /// Re-encoding a long reply takes milliseconds of CPU, so async callers run this off their
    /// worker threads when `usage` is `None`.
    pub fn output_tokens(
        &self,
        tokenizer: &Tokenizer,
    ) -> Result<(u64, TokenCountSource), EncodeError> {
        if let Some(usage) = self.usage {
            return Ok((usage.completion_tokens, TokenCountSource::Usage));
        }
        let mut text = String::with_capacity(self.reasoning.len() + self.content.len());
        text.push_str(&self.reasoning);
        text.push_str(&self.content);
        let count = tokenizer.count(&text)?;
        Ok((count as u64, TokenCountSource::Tokenizer))
    }
}

/// Accumulates a [`StreamRecord`] from the events of one turn, in arrival order.
#[derive(Debug)]
pub(crate) struct Recorder {
    t0: Instant,
    ttft: Option<Duration>,
    time_to_first_content: Option<Duration>,
    last_text_at: Option<Instant>,
    itl: Vec<Duration>,
    content: String,
    reasoning: String,
    usage: Option<Usage>,
    text_events: u32,
    finish_reason: Option<String>,
    saw_done: bool,
}

impl Recorder {
    /// Starts a recorder at t0. `max_tokens` sizes the gap list, because one text event per
    /// token is the common case.
    pub fn new(t0: Instant, max_tokens: Option<u32>) -> Self {
        let reserved_gaps = max_tokens.map_or(0, |tokens| (tokens as usize).min(MAX_RESERVED_GAPS));
        Self {
            t0,
            ttft: None,
            time_to_first_content: None,
            last_text_at: None,
            itl: Vec::with_capacity(reserved_gaps),
            content: String::new(),
            reasoning: String::new(),
            usage: None,
            text_events: 0,
            finish_reason: None,
            saw_done: false,
        }
    }

    /// Records a streamed chunk whose event arrived at `arrived`.
    pub fn record_chunk(&mut self, chunk: &ChunkView<'_>, arrived: Instant) {
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
        }
        let Some(choice) = &chunk.choice else {
            return;
        };
        if let Some(delta) = &choice.delta {
            self.record_text(delta, arrived);
        }
        if let Some(reason) = &choice.finish_reason {
            self.set_finish_reason(reason.as_str());
        }
    }

    /// Records a non-streaming `chat.completion` reply as one event that arrived at `arrived`.
    pub fn record_completion(&mut self, completion: &ChunkView<'_>, arrived: Instant) {
        self.usage = completion.usage;
        let Some(choice) = &completion.choice else {
            return;
        };
        if let Some(message) = &choice.message {
            self.record_text(message, arrived);
        }
        if let Some(reason) = &choice.finish_reason {
            self.set_finish_reason(reason.as_str());
        }
    }

    pub fn record_done(&mut self) {
        self.saw_done = true;
    }

    /// Returns whether the server signalled the end of the reply, by `[DONE]` or by a `finish_reason`.
    /// A stream that ends after this point is complete even without `[DONE]`.
    pub fn is_complete(&self) -> bool {
        self.saw_done || self.finish_reason.is_some()
    }

    pub fn finish(self, stream_end: Instant) -> StreamRecord {
        StreamRecord {
            ttft: self.ttft,
            time_to_first_content: self.time_to_first_content,
            e2e: self.last_text_at.map(|at| at - self.t0),
            itl: self.itl,
            stream_end: stream_end - self.t0,
            content: self.content,
            reasoning: self.reasoning,
            usage: self.usage,
            text_events: self.text_events,
            finish_reason: self.finish_reason,
            saw_done: self.saw_done,
        }
    }

    fn record_text(&mut self, message: &MessageView<'_>, arrived: Instant) {
        if !message.is_text_bearing() {
            return;
        }
        let since_t0 = arrived - self.t0;

        self.ttft.get_or_insert(since_t0);
        if !message.content().is_empty() {
            self.time_to_first_content.get_or_insert(since_t0);
        }
        if let Some(previous) = self.last_text_at {
            self.itl.push(arrived - previous);
        }
        self.last_text_at = Some(arrived);
        self.text_events = self.text_events.saturating_add(1);

        self.content.push_str(message.content());
        self.reasoning.push_str(message.reasoning());
    }

    fn set_finish_reason(&mut self, reason: &str) {
        if self.finish_reason.as_deref() != Some(reason) {
            self.finish_reason = Some(reason.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::chunk::{Payload, parse_payload};

    fn feed(recorder: &mut Recorder, data: &str, arrived: Instant) {
        match parse_payload(data).unwrap() {
            Payload::Chunk(chunk) => recorder.record_chunk(&chunk, arrived),
            Payload::Done => recorder.record_done(),
            Payload::Error(message) => panic!("error payload: {message}"),
        }
    }

    fn ms(milliseconds: u64) -> Duration {
        Duration::from_millis(milliseconds)
    }

    #[test]
    fn timing_definitions() {
        let t0 = Instant::now();
        let mut recorder = Recorder::new(t0, Some(3));
        let events = [
            (
                10,
                r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#,
            ),
            (100, r#"{"choices":[{"delta":{"reasoning_content":"hm"}}]}"#),
            (150, r#"{"choices":[{"delta":{"content":"a"}}]}"#),
            (150, r#"{"choices":[{"delta":{"content":"b"}}]}"#),
            (
                230,
                r#"{"choices":[{"delta":{"content":"c"},"finish_reason":"length"}]}"#,
            ),
            (
                240,
                r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":4}}"#,
            ),
            (250, "[DONE]"),
        ];
        for (at, data) in events {
            feed(&mut recorder, data, t0 + ms(at));
        }
        let record = recorder.finish(t0 + ms(250));

        assert_eq!(record.ttft, Some(ms(100)));
        assert_eq!(record.time_to_first_content, Some(ms(150)));
        assert_eq!(record.itl, vec![ms(50), ms(0), ms(80)]);
        assert_eq!(record.e2e, Some(ms(230)));
        assert_eq!(record.stream_end, ms(250));
        assert_eq!(record.content, "abc");
        assert_eq!(record.reasoning, "hm");
        assert_eq!(record.text_events, 4);
        assert_eq!(record.usage.map(|usage| usage.completion_tokens), Some(4));
        assert_eq!(record.finish_reason.as_deref(), Some("length"));
        assert!(record.saw_done);
    }

    #[test]
    fn no_text_means_no_latency() {
        let t0 = Instant::now();
        let mut recorder = Recorder::new(t0, None);
        feed(
            &mut recorder,
            r#"{"choices":[{"delta":{"role":"assistant"}}]}"#,
            t0 + ms(5),
        );
        feed(
            &mut recorder,
            r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#,
            t0 + ms(6),
        );
        let record = recorder.finish(t0 + ms(7));

        assert_eq!(record.ttft, None);
        assert_eq!(record.time_to_first_content, None);
        assert_eq!(record.e2e, None);
        assert!(record.itl.is_empty());
        assert_eq!(record.text_events, 0);
        assert_eq!(record.stream_end, ms(7));
    }

    #[test]
    fn tool_call_ends_ttft() {
        let t0 = Instant::now();
        let mut recorder = Recorder::new(t0, None);
        let tool_call =
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"ls"}}]}}]}"#;
        feed(&mut recorder, tool_call, t0 + ms(40));
        let record = recorder.finish(t0 + ms(50));

        assert_eq!(record.ttft, Some(ms(40)));
        assert_eq!(record.time_to_first_content, None);
        assert_eq!(record.content, "");
    }

    #[test]
    fn last_usage_wins() {
        let t0 = Instant::now();
        let mut recorder = Recorder::new(t0, None);
        feed(
            &mut recorder,
            r#"{"choices":[{"delta":{"content":"a"}}],"usage":{"prompt_tokens":5,"completion_tokens":1}}"#,
            t0,
        );
        feed(
            &mut recorder,
            r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}"#,
            t0,
        );
        let record = recorder.finish(t0);

        assert_eq!(record.usage.map(|usage| usage.completion_tokens), Some(2));
    }

    #[test]
    fn completeness() {
        let t0 = Instant::now();
        let cases = [
            ("nothing", vec![], false),
            (
                "text only",
                vec![r#"{"choices":[{"delta":{"content":"a"}}]}"#],
                false,
            ),
            (
                "finish reason",
                vec![r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#],
                true,
            ),
            ("done", vec!["[DONE]"], true),
        ];
        for (name, events, expected) in cases {
            let mut recorder = Recorder::new(t0, None);
            for data in events {
                feed(&mut recorder, data, t0);
            }
            assert_eq!(recorder.is_complete(), expected, "case {name}");
        }
    }
}
